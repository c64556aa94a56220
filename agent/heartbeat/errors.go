package heartbeat

import "errors"

// errors.Is targets for the heartbeat's failures.
var (
	// ErrMalformed: the bytes are not a valid heartbeat message.
	ErrMalformed = errors.New("heartbeat: malformed message")
	// ErrVersion: the message is of a wire version this side does not speak.
	ErrVersion = errors.New("heartbeat: unsupported wire version")
	// ErrUnmatchedReply: a reply answers no heartbeat this device has
	// outstanding on that channel: it was meant for another device, is a
	// forgery that passed transport security, or answers a heartbeat sent
	// before the agent started.
	ErrUnmatchedReply = errors.New("heartbeat: reply matches no outstanding heartbeat of this device")
	// ErrReplayedReply: the reply answers a heartbeat that was already
	// answered.
	ErrReplayedReply = errors.New("heartbeat: replayed reply")
	// ErrReorderedReply: the reply answers a heartbeat older than one
	// already answered.
	ErrReorderedReply = errors.New("heartbeat: reordered reply")
)
