// Package serialtest gives tests a null-modem cable made of pseudo-terminals.
package serialtest

import (
	"io"
	"sync"
	"testing"

	"github.com/creack/pty"
)

// NullModem returns the device names of the two ends of a null-modem cable: two pty pairs whose
// masters are copied into each other, so that what one end writes the other reads (design.md).
// The cable is unplugged when the test ends.
func NullModem(t testing.TB) (a, b string) {
	t.Helper()
	m1, s1, err := pty.Open()
	if err != nil {
		t.Fatal(err)
	}
	m2, s2, err := pty.Open()
	if err != nil {
		m1.Close()
		s1.Close()
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() { io.Copy(m2, m1) })
	wg.Go(func() { io.Copy(m1, m2) })
	t.Cleanup(func() {
		// The slaves stay open until now: a master whose slave has no open file reads EIO.
		for _, f := range []io.Closer{m1, m2, s1, s2} {
			f.Close()
		}
		wg.Wait()
	})
	return s1.Name(), s2.Name()
}
