package predict

import (
	"errors"
	"fmt"
)

// ErrCorrupt is matched (errors.Is) by every error about a history file
// that cannot be decoded.
var ErrCorrupt = errors.New("corrupt history")

// CorruptError says what is wrong with a history file and where.
type CorruptError struct {
	Path   string // "" when decoding bytes not read from a file
	Offset int    // byte offset of the problem
	Reason string
}

func (e *CorruptError) Error() string {
	where := "history"
	if e.Path != "" {
		where = "history " + e.Path
	}
	return fmt.Sprintf("predict: %s: corrupt at byte %d: %s", where, e.Offset, e.Reason)
}

func (e *CorruptError) Is(target error) bool { return target == ErrCorrupt }
