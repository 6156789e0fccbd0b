package director

import (
	"testing"
	"time"
)

// A full pass that takes a good part of the reconcile interval pushes the next one out, so that
// passes never take more than a third of the IPVS loop's time.
func TestNextFullPassSpacesOutLongPasses(t *testing.T) {
	for _, tt := range []struct{ interval, took, want time.Duration }{
		{5 * time.Second, 10 * time.Millisecond, 5 * time.Second},
		{5 * time.Second, 15 * time.Second, 45 * time.Second},
		{time.Second, 400 * time.Millisecond, 1200 * time.Millisecond},
	} {
		if got := nextFullPass(tt.interval, tt.took); got != tt.want {
			t.Errorf("nextFullPass(%s, %s) = %s, want %s", tt.interval, tt.took, got, tt.want)
		}
	}
}
