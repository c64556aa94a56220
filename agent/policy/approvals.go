package policy

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"
)

// Pending is a request waiting for a local person.
type Pending struct {
	ID             string    `json:"id"`
	Action         string    `json:"action"`
	Requester      string    `json:"requester,omitempty"`
	ServiceRequest string    `json:"service_request,omitempty"`
	Detail         string    `json:"detail,omitempty"`
	Asked          time.Time `json:"asked"`
	Expires        time.Time `json:"expires"`
}

// Answer is how an ask ended.
type Answer struct {
	Approved bool `json:"approved"`
	// By names who answered (uid:N(NAME)); empty for a timeout.
	By string `json:"by,omitempty"`
	// Outcome is approved, denied, timeout or cancelled.
	Outcome string `json:"outcome"`
}

// ErrUnknownRequest is returned by Answer for an id that is not waiting
// (never asked, already answered or expired).
var ErrUnknownRequest = errors.New("no request with that id is waiting")

// Approvals holds the requests waiting for a local person. Ask blocks the
// requester until Answer, the timeout, or its context.
type Approvals struct {
	timeout time.Duration
	logger  *slog.Logger
	now     func() time.Time

	mu      sync.Mutex
	pending map[string]*waiting
}

type waiting struct {
	p      Pending
	answer chan Answer
}

// NewApprovals makes a table whose asks expire after timeout.
func NewApprovals(timeout time.Duration, logger *slog.Logger) *Approvals {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Approvals{timeout: timeout, logger: logger, now: time.Now, pending: map[string]*waiting{}}
}

// newID makes a short id a person can type: 8 characters of a-z and 2-7.
func newID() string {
	b := make([]byte, 5)
	rand.Read(b)
	return strings.ToLower(base32.StdEncoding.EncodeToString(b))
}

// Ask waits for a local person to answer p (its ID, Asked and Expires are
// filled in here). It returns the answer: approved, denied, timeout (after
// the table's timeout) or cancelled (ctx ended).
func (a *Approvals) Ask(ctx context.Context, p Pending) (Pending, Answer) {
	w := &waiting{answer: make(chan Answer, 1)}
	a.mu.Lock()
	for {
		p.ID = newID()
		if _, dup := a.pending[p.ID]; !dup {
			break
		}
	}
	p.Asked = a.now()
	p.Expires = p.Asked.Add(a.timeout)
	w.p = p
	a.pending[p.ID] = w
	a.mu.Unlock()
	a.logger.Info("policy: approval needed; answer with `dcagent approve ID` or `dcagent deny ID`",
		"id", p.ID, "action", p.Action, "requester", p.Requester, "service_request", p.ServiceRequest, "expires", p.Expires.Format(time.RFC3339))

	timer := time.NewTimer(a.timeout)
	defer timer.Stop()
	var ans Answer
	select {
	case ans = <-w.answer:
		return p, ans
	case <-timer.C:
		ans = Answer{Outcome: "timeout"}
	case <-ctx.Done():
		ans = Answer{Outcome: "cancelled"}
	}
	a.mu.Lock()
	_, still := a.pending[p.ID]
	delete(a.pending, p.ID)
	a.mu.Unlock()
	if !still {
		// Answered at the very moment the wait ended: the answer wins.
		return p, <-w.answer
	}
	return p, ans
}

// Answer approves or denies the waiting request id on behalf of by.
func (a *Approvals) Answer(id string, approve bool, by string) error {
	id = strings.ToLower(strings.TrimSpace(id))
	a.mu.Lock()
	w, ok := a.pending[id]
	delete(a.pending, id)
	a.mu.Unlock()
	if !ok {
		return fmt.Errorf("%w: %q", ErrUnknownRequest, id)
	}
	ans := Answer{Approved: approve, By: by, Outcome: "denied"}
	if approve {
		ans.Outcome = "approved"
	}
	w.answer <- ans
	return nil
}

// Pending lists the waiting requests, oldest first.
func (a *Approvals) Pending() []Pending {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]Pending, 0, len(a.pending))
	for _, w := range a.pending {
		out = append(out, w.p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Asked.Before(out[j].Asked) })
	return out
}
