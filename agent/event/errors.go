package event

import "errors"

var (
	// ErrUndeclaredField means a payload carries a field that the
	// reportable-items registry does not list for the event's type. Such an
	// event is refused: nothing leaves the device that is not declared.
	ErrUndeclaredField = errors.New("field not in the reportable-items registry")
	// ErrInvalid means an event's envelope or a payload value is malformed.
	ErrInvalid = errors.New("invalid event")
)

// FieldError names the payload field at fault, as a dotted path
// ("drives[3].serial").
type FieldError struct {
	Type  Type
	Field string
	Err   error
}

func (e *FieldError) Error() string {
	return "event: " + string(e.Type) + " payload field " + e.Field + ": " + e.Err.Error()
}

func (e *FieldError) Unwrap() error { return e.Err }
