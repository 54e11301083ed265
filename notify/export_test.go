package notify

import (
	"context"
	"net/netip"
	"time"
)

// RefusedAddr reports whether the dialer refuses addr without an allowance.
func RefusedAddr(addr string) bool { return refusedAddr(netip.MustParseAddr(addr)) }

// ProbeDial dials address with a destination's dialer and closes the connection.
func ProbeDial(ctx context.Context, network, address string, allowPrivate bool) error {
	c, err := newDialer(allowPrivate, time.Second).DialContext(ctx, network, address)
	if err == nil {
		c.Close()
	}
	return err
}
