package imds_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/imds"
)

// TestOversizeBodyIsMalformed: an answer over the 64 KiB read limit is
// refused whole. Regression: it was cut at the limit and parsed, so this
// local-ipv4s list, whose first 65536 bytes end in "\n10.0.1.2", became a
// list with the valid, wrong address 10.0.1.2 at its end.
func TestOversizeBodyIsMalformed(t *testing.T) {
	f, c := start(t, secondary())
	body := strings.Repeat("10.0.1.25\n", 6552) + "1.2.3.4\n" + "10.0.1.25\n"
	if got := body[65536-9 : 65536]; got != "\n10.0.1.2" {
		t.Fatalf("test body cut at 64 KiB ends in %q", got)
	}
	f.SetRaw("/local-ipv4s", body)
	_, err := c.Lookup(ctxT(t, 3*time.Second), mac(t, eniMAC))
	if !errors.Is(err, imds.ErrMalformed) || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("err %v, want ErrMalformed for an answer over 64 KiB", err)
	}
}
