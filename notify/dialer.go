package notify

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"time"
)

// ErrRefusedAddress: the dialer refused an address on a loopback, private, link-local,
// multicast or unspecified network, which the destination did not allow.
var ErrRefusedAddress = errors.New("notify: refused to connect to a loopback, private, link-local, multicast or unspecified address")

// sharedSpace is the carrier-grade NAT range (RFC 6598), private in all but name.
var sharedSpace = netip.MustParsePrefix("100.64.0.0/10")

// refusedAddr reports whether ip is on a network a webhook must not reach unless allowed.
func refusedAddr(ip netip.Addr) bool {
	ip = ip.Unmap()
	return !ip.IsValid() || ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() ||
		ip.IsLinkLocalMulticast() || ip.IsInterfaceLocalMulticast() || ip.IsMulticast() ||
		ip.IsUnspecified() || sharedSpace.Contains(ip) || (ip.Is4() && ip.As4()[0] == 0) ||
		ip == netip.AddrFrom4([4]byte{255, 255, 255, 255})
}

// guardControl checks the address a connection is about to be made to: after name
// resolution and for every address tried, so neither a name that resolves to a private
// address nor a DNS answer that changes between checks gets through.
func guardControl(_, address string, _ syscall.RawConn) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return fmt.Errorf("%w: %q", ErrRefusedAddress, address)
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || refusedAddr(ip) {
		return fmt.Errorf("%w: %s", ErrRefusedAddress, host)
	}
	return nil
}

// newDialer returns the dialer of a destination: guarded unless allowPrivate.
func newDialer(allowPrivate bool, timeout time.Duration) *net.Dialer {
	d := &net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}
	if !allowPrivate {
		d.Control = guardControl
	}
	return d
}
