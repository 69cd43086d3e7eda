package server

import (
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/silofl/silo"
)

// Sign-in throttling slows password guessing down without locking anyone
// out. It keeps three counters of failed sign-ins, each cleared a day after
// its last failure:
//
//   - per (account, client address): the first few failures are free; then
//     each further attempt must wait a delay that doubles with every failure
//     up to a minute. An attempt made sooner is refused without its password
//     being checked, so guessing from one address is bounded (about sixty
//     guesses an hour) while a person who mistyped waits seconds.
//   - per account (from any address) and per address (for any account):
//     the same, with more free failures, bounding guessing spread over many
//     addresses (a botnet) and password spraying over many accounts.
//
// A pair that has signed in before is "good" for 30 days: the wider
// counters never slow it down, so someone guessing elsewhere, or others
// behind the same address, do not stop a person signing in from where they
// did before. Even its own counter lets a correct password through, until
// GoodLimit failures from the pair in a day: beyond that, an attacker who
// shares the person's address (one NAT) would be guessing unbounded, so the
// pair is throttled like any other.
//
// Addresses are the client's, not a reverse proxy's: X-Forwarded-For is
// honoured only from TrustedProxies. IPv6 clients are counted per /64, the
// block one subscriber usually gets.
type signInThrottle struct {
	mu     sync.Mutex
	counts map[string]*failures
	good   map[string]time.Time // pair → last sign-in

	// Free failures before a key waits, per kind of key.
	PairFree, AccountFree, AddressFree int
	BaseDelay, MaxDelay                time.Duration
	// GoodLimit is how many failures a good pair may have before a correct
	// password from it is also made to wait.
	GoodLimit int
	Forget    time.Duration // a key's failures are dropped this long after its last
	GoodFor   time.Duration // a pair stays good this long after a sign-in
	// MaxKeys bounds memory under a flood of made-up accounts and
	// addresses: beyond it, forgotten keys are swept, then arbitrary ones
	// dropped.
	MaxKeys int
}

type failures struct {
	n    int
	last time.Time
}

func newSignInThrottle() *signInThrottle {
	return &signInThrottle{counts: map[string]*failures{}, good: map[string]time.Time{},
		PairFree: 5, AccountFree: 20, AddressFree: 50, BaseDelay: time.Second, MaxDelay: time.Minute,
		GoodLimit: 50, Forget: 24 * time.Hour, GoodFor: 30 * 24 * time.Hour, MaxKeys: 100_000}
}

// signInKeys are the counters one attempt touches.
type signInKeys struct{ pair, account, address string }

func throttleKeys(email, addr string) signInKeys {
	return signInKeys{pair: "pair:" + email + "|" + addr, account: "account:" + email, address: "address:" + addr}
}

// wait returns how long the attempt must still wait before its password is
// checked, and whether a correct password may come through anyway (a good
// pair within GoodLimit).
func (l *signInThrottle) wait(k signInKeys, now time.Time) (wait time.Duration, correctMayPass bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	good := l.isGood(k.pair, now)
	wait = l.waitFor(k.pair, l.PairFree, now)
	if !good {
		wait = max(wait, l.waitFor(k.account, l.AccountFree, now), l.waitFor(k.address, l.AddressFree, now))
	}
	pairFailures := 0
	if f := l.counts[k.pair]; f != nil {
		pairFailures = f.n
	}
	return wait, good && pairFailures < l.GoodLimit
}

func (l *signInThrottle) isGood(pair string, now time.Time) bool {
	t, ok := l.good[pair]
	if ok && now.Sub(t) >= l.GoodFor {
		delete(l.good, pair)
		return false
	}
	return ok
}

// waitFor is how long key must still wait: nothing for its first free
// failures, then BaseDelay doubled for every failure beyond, up to MaxDelay,
// counted from its last failure.
func (l *signInThrottle) waitFor(key string, free int, now time.Time) time.Duration {
	f := l.counts[key]
	if f == nil {
		return 0
	}
	if now.Sub(f.last) >= l.Forget {
		delete(l.counts, key)
		return 0
	}
	if f.n < free {
		return 0
	}
	delay := l.MaxDelay
	if shift := f.n - free; shift < 30 {
		delay = min(l.MaxDelay, l.BaseDelay<<shift)
	}
	return max(0, f.last.Add(delay).Sub(now))
}

// fail records a failed attempt on every counter.
func (l *signInThrottle) fail(k signInKeys, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, key := range []string{k.pair, k.account, k.address} {
		f := l.counts[key]
		if f == nil || now.Sub(f.last) >= l.Forget {
			l.makeRoom(now)
			f = &failures{}
			l.counts[key] = f
		}
		f.n++
		f.last = now
	}
}

// succeed clears the pair's failures and remembers it as good.
func (l *signInThrottle) succeed(k signInKeys, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.counts, k.pair)
	if _, ok := l.good[k.pair]; !ok && len(l.good) >= l.MaxKeys {
		for key, t := range l.good {
			if now.Sub(t) >= l.GoodFor || len(l.good) >= l.MaxKeys {
				delete(l.good, key)
			}
		}
	}
	l.good[k.pair] = now
}

// makeRoom keeps the failure counters under MaxKeys.
func (l *signInThrottle) makeRoom(now time.Time) {
	if len(l.counts) < l.MaxKeys {
		return
	}
	for key, f := range l.counts {
		if now.Sub(f.last) >= l.Forget {
			delete(l.counts, key)
		}
	}
	for key := range l.counts { // map order is random: no one can aim at a key
		if len(l.counts) < l.MaxKeys {
			break
		}
		delete(l.counts, key)
	}
}

// errThrottled is the answer to an attempt that must wait. It says the
// same whether or not the password was checked.
func errThrottled(wait time.Duration) error {
	return silo.Errorf(silo.ETOOMANY, "too many failed sign-in attempts: try again in %s", max(time.Second, wait.Round(time.Second)))
}

// clientAddr is the address a request came from, as the throttle counts it:
// the peer's, or, when the peer is a trusted proxy, the nearest address in
// X-Forwarded-For that is not a trusted proxy (each proxy appends the
// address it received the request from, so entries further left are
// whatever the client chose to send). IPv6 addresses are cut to their /64.
func (s *Server) clientAddr(r *http.Request) string {
	peer, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr // not from a network listener (tests, a unix socket)
	}
	addr := peer.Addr().Unmap()
	if s.trusted(addr) {
		hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
		for i := len(hops) - 1; i >= 0; i-- {
			hop, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
			if err != nil {
				break // a garbled entry: trust nothing to its left
			}
			addr = hop.Unmap()
			if !s.trusted(addr) {
				break
			}
		}
	}
	if addr.Is6() {
		p, _ := addr.Prefix(64)
		return p.String()
	}
	return addr.String()
}

func (s *Server) trusted(addr netip.Addr) bool {
	for _, p := range s.TrustedProxies {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// ParseTrustedProxies parses a comma-separated list of addresses and CIDR
// blocks (10.0.0.0/8, 192.0.2.7, fd00::/8), as --trusted-proxies takes it.
func ParseTrustedProxies(list string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, item := range strings.Split(list, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		if p, err := netip.ParsePrefix(item); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(item)
		if err != nil {
			return nil, fmt.Errorf("%q is neither an IP address nor a CIDR block such as 10.0.0.0/8", item)
		}
		out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
	}
	return out, nil
}
