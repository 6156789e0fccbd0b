package api

import (
	"errors"
	"fmt"
	"net/http"
	"testing"

	"github.com/troop-lb/troop/cluster"
	"github.com/troop-lb/troop/fsm"
)

// The status of each error class, and the client turning it back into the sentinel.
func TestErrorStatusRoundTrip(t *testing.T) {
	tests := []struct {
		err    error
		status int
		is     error
	}{
		{fmt.Errorf("apply: %w", cluster.ErrNoLeader), http.StatusServiceUnavailable, cluster.ErrNoLeader},
		{fmt.Errorf("apply: %w", cluster.ErrNotRunning), http.StatusServiceUnavailable, cluster.ErrNoLeader},
		{fmt.Errorf("apply: %w", cluster.ErrUnknownOutcome), http.StatusBadGateway, cluster.ErrUnknownOutcome},
		{&fsm.FieldError{Field: "service", Value: "x", Reason: "does not exist", Kind: fsm.ErrNotFound}, http.StatusNotFound, fsm.ErrNotFound},
		{fmt.Errorf("apply: %w", cluster.ErrFeatureUnavailable), http.StatusPreconditionFailed, cluster.ErrFeatureUnavailable},
		{errors.New("disk on fire"), http.StatusInternalServerError, nil},
	}
	for _, tt := range tests {
		e := errorFor(tt.err)
		if e.StatusCode != tt.status {
			t.Errorf("%v: status %d, want %d", tt.err, e.StatusCode, tt.status)
		}
		if e.Message != tt.err.Error() {
			t.Errorf("%v: message %q lost the error's text", tt.err, e.Message)
		}
		if tt.is != nil && !errors.Is(e, tt.is) {
			t.Errorf("%v: client error does not match %v", tt.err, tt.is)
		}
	}
}
