package status

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"time"
)

// ErrNotRunning means no daemon answers on the socket.
var ErrNotRunning = errors.New("the dcagent daemon is not running")

// RemoteError is an error the daemon returned for a request.
type RemoteError struct{ Message string }

func (e *RemoteError) Error() string { return "dcagent daemon: " + e.Message }

// Call sends one request to the daemon at path and decodes the result
// into result (which may be nil).
func Call(ctx context.Context, path, method string, params, result any) error {
	d := net.Dialer{Timeout: 5 * time.Second}
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		switch {
		case errors.Is(err, os.ErrNotExist), errors.Is(err, syscall.ECONNREFUSED):
			return fmt.Errorf("%w (nothing answers on %s)", ErrNotRunning, path)
		case errors.Is(err, os.ErrPermission):
			return fmt.Errorf("permission denied on %s: run as root or as a member of [policy] socket_group", path)
		}
		return fmt.Errorf("control socket %s: %w", path, err)
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	} else {
		c.SetDeadline(time.Now().Add(time.Minute))
	}
	req := request{Method: method}
	if params != nil {
		b, err := json.Marshal(params)
		if err != nil {
			return err
		}
		req.Params = b
	}
	b, _ := json.Marshal(req)
	if _, err := c.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("control socket %s: %w", path, err)
	}
	line, err := readLine(bufio.NewReader(c))
	if err != nil {
		return fmt.Errorf("control socket %s: no answer: %w", path, err)
	}
	var resp struct {
		OK     bool            `json:"ok"`
		Result json.RawMessage `json:"result"`
		Error  string          `json:"error"`
	}
	if err := json.Unmarshal(line, &resp); err != nil {
		return fmt.Errorf("control socket %s: malformed answer: %w", path, err)
	}
	if !resp.OK {
		return &RemoteError{Message: resp.Error}
	}
	if result != nil && len(resp.Result) > 0 {
		if err := json.Unmarshal(resp.Result, result); err != nil {
			return fmt.Errorf("control socket %s: answer to %s: %w", path, method, err)
		}
	}
	return nil
}
