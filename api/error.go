package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/troop-lb/troop/cluster"
	"github.com/troop-lb/troop/fsm"
)

// Error is the body of every non-2xx answer, and what the Client returns for one.
type Error struct {
	// StatusCode is the HTTP status of the answer; it is not part of the body.
	StatusCode int `json:"-"`
	// Message is the whole explanation, naming the field and the value when there is one.
	Message string `json:"error"`
	// Field is the rejected input's path (`service "web" real "192.0.2.21:80" weight`, or a
	// JSON path in a request body such as `reals[0].address`).
	Field string `json:"field,omitempty"`
	// Value is the rejected value.
	Value string `json:"value,omitempty"`
}

func (e *Error) Error() string { return e.Message }

// Unwrap maps the status to the error callers branch on, so that errors.Is(err, fsm.ErrNotFound)
// works on what the Client returns: 400 is fsm.ErrInvalid, 404 fsm.ErrNotFound (an unknown
// route, service, real server or peer), 409 fsm.ErrConflict, 412 cluster.ErrFeatureUnavailable
// (a server of the pool is too old for the write), 503 cluster.ErrNoLeader (no leader, or the
// agent is starting or stopping), 502 cluster.ErrUnknownOutcome.
func (e *Error) Unwrap() error {
	switch e.StatusCode {
	case http.StatusBadRequest:
		return fsm.ErrInvalid
	case http.StatusNotFound:
		return fsm.ErrNotFound
	case http.StatusConflict:
		return fsm.ErrConflict
	case http.StatusPreconditionFailed:
		return cluster.ErrFeatureUnavailable
	case http.StatusServiceUnavailable:
		return cluster.ErrNoLeader
	case http.StatusBadGateway:
		return cluster.ErrUnknownOutcome
	}
	return nil
}

// badRequest is a 400 about one field of the request.
func badRequest(field, value, format string, args ...any) *Error {
	return &Error{StatusCode: http.StatusBadRequest, Message: fmt.Sprintf(format, args...), Field: field, Value: value}
}

// errorFor classifies err into the status and body the client gets.
func errorFor(err error) *Error {
	var ae *Error
	if errors.As(err, &ae) {
		return ae
	}
	e := &Error{StatusCode: http.StatusInternalServerError, Message: err.Error()}
	var fe *fsm.FieldError
	if errors.As(err, &fe) {
		e.Field, e.Value = fe.Field, fe.Value
	}
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		e.StatusCode = http.StatusRequestEntityTooLarge
		e.Message = fmt.Sprintf("request body is larger than the limit of %s", formatBytes(tooLarge.Limit))
	case errors.Is(err, fsm.ErrInvalid), errors.Is(err, fsm.ErrNewerVersion), errors.Is(err, fsm.ErrUnknownCommand):
		// A command this agent's build cannot express is the request's problem, not the agent's.
		e.StatusCode = http.StatusBadRequest
	case errors.Is(err, fsm.ErrNotFound), errors.Is(err, cluster.ErrUnknownPeer):
		e.StatusCode = http.StatusNotFound
	case errors.Is(err, fsm.ErrConflict):
		e.StatusCode = http.StatusConflict
	case errors.Is(err, cluster.ErrFeatureUnavailable):
		// The write is well-formed; the pool cannot take it until its upgrade is done.
		e.StatusCode = http.StatusPreconditionFailed
	case errors.Is(err, cluster.ErrNoLeader), errors.Is(err, cluster.ErrNotRunning):
		e.StatusCode = http.StatusServiceUnavailable
	case errors.Is(err, cluster.ErrUnknownOutcome):
		// The message says the write may have been committed: check before retrying.
		e.StatusCode = http.StatusBadGateway
	case errors.Is(err, context.DeadlineExceeded):
		e.StatusCode = http.StatusGatewayTimeout
	}
	return e
}

func formatBytes(n int64) string {
	if n >= 1<<20 && n%(1<<20) == 0 {
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%d bytes", n)
}
