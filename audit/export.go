package audit

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/agate-pdp/agate/evidence"
	"github.com/agate-pdp/agate/store"
)

// ExportFormat is the format of the exports Export writes. Format 1 (no manifest)
// held every checkpoint but only the window's chains, so it could not prove itself
// complete; format 2's manifest was not signed, so it could be edited to match a file
// that lost checkpoints.
const ExportFormat = 3

// Manifest says what an export covers, signed by the exporting replica's evidence key:
// a verifier expects exactly the checkpoints FirstCheckpoint to LastCheckpoint, the
// last one with hash LastHash.
type Manifest struct {
	Format                          int32
	Since, Until                    int64  // the window requested
	FirstCheckpoint, LastCheckpoint int64  // seqs of the export's checkpoints; 0 when none
	LastHash                        string // hash of checkpoint LastCheckpoint; "" when none
	KeyID                           string // of the key that signed it
	Signature                       []byte // Ed25519 over ManifestMessage(m); nil before format 3
}

// ManifestMessage is what the exporting replica's key signs: every field of m but
// the signature and its key id.
func ManifestMessage(m *Manifest) []byte {
	return fmt.Appendf(nil, "agate export manifest v1\nformat=%d\nsince=%d\nuntil=%d\nfirst=%d\nlast=%d\nlast_hash=%q",
		m.Format, m.Since, m.Until, m.FirstCheckpoint, m.LastCheckpoint, m.LastHash)
}

// Sign signs m with key, the evidence signing key.
func (m *Manifest) Sign(key ed25519.PrivateKey) {
	pub, _ := key.Public().(ed25519.PublicKey)
	m.KeyID = evidence.KeyID(pub)
	m.Signature = ed25519.Sign(key, ManifestMessage(m))
}

// signedBy reports whether pub signed m.
func (m *Manifest) signedBy(pub ed25519.PublicKey) bool {
	return len(pub) == ed25519.PublicKeySize && evidence.KeyID(pub) == m.KeyID &&
		ed25519.Verify(pub, ManifestMessage(m), m.Signature)
}

// ExportItem is one item of an export: the manifest (first), an event or a checkpoint.
type ExportItem struct {
	Manifest   *Manifest
	Event      *evidence.Event
	Checkpoint *store.Checkpoint
}

// errNoExportKey: a Service without Config.Key cannot sign an export's manifest.
var errNoExportKey = errors.New("audit: no evidence signing key configured (Config.Key): an export's manifest cannot be signed")

// Export hands emit the manifest, signed with the evidence key, then every chain with an event in w and every chain
// sealed by a checkpoint of the window, whole and in chain order (so each chain
// verifies on its own), then the window's checkpoints in order. The window's
// checkpoints are those whose time is in w widened by the sealing window on both
// sides (every event in w is sealed by one of them, if sealing ran), and every one in
// between, so they link; for an open window, every checkpoint. Only checkpoints that
// existed when the export began are included, so each head they seal is among the
// events sent. VerifyExport checks the result offline. Nothing is held in one
// transaction: emit may be slow.
func (s *Service) Export(ctx context.Context, w Window, emit func(ExportItem) error) error {
	if err := w.check(); err != nil {
		return err
	}
	if s.key == nil {
		return errNoExportKey
	}
	lookback := micros(SealWindow(s.maxSkew))
	lo, hi := int64(math.MinInt64), int64(math.MaxInt64)
	if w.Since > 0 {
		lo = w.Since - lookback
	}
	if w.Until > 0 {
		hi = w.Until + lookback
	}
	m := &Manifest{Format: ExportFormat, Since: w.Since, Until: w.Until}
	sealed := map[string]bool{}
	err := s.eachCheckpoint(ctx, 0, 0, func(c *store.Checkpoint) error {
		if c.At < lo || c.At >= hi {
			return nil
		}
		if m.FirstCheckpoint == 0 {
			m.FirstCheckpoint = c.Seq
		}
		m.LastCheckpoint, m.LastHash = c.Seq, c.Hash
		return nil
	})
	if err != nil {
		return err
	}
	if m.FirstCheckpoint > 0 && !w.open() {
		err = s.eachCheckpoint(ctx, m.FirstCheckpoint-1, m.LastCheckpoint, func(c *store.Checkpoint) error {
			for _, h := range c.Heads {
				sealed[h.JobID] = true
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	m.Sign(s.key)
	if err := emit(ExportItem{Manifest: m}); err != nil {
		return err
	}
	sendChain := func(_ string, events []evidence.Event) error {
		for i := range events {
			if err := emit(ExportItem{Event: &events[i]}); err != nil {
				return err
			}
		}
		return nil
	}
	if w.open() {
		err = s.eachChainOf(ctx, nil, sendChain)
	} else {
		var ids []string
		err = s.read(ctx, func(ctx context.Context, tx store.Tx) error {
			var err error
			ids, err = chainsIn(ctx, tx, w)
			return err
		})
		if err != nil {
			return err
		}
		for _, id := range ids {
			delete(sealed, id)
		}
		for id := range sealed {
			ids = append(ids, id)
		}
		slices.Sort(ids[len(ids)-len(sealed):])
		if len(ids) > 0 {
			err = s.eachChainOf(ctx, ids, sendChain)
		}
	}
	if err != nil || m.FirstCheckpoint == 0 {
		return err
	}
	return s.eachCheckpoint(ctx, m.FirstCheckpoint-1, m.LastCheckpoint, func(c *store.Checkpoint) error {
		return emit(ExportItem{Checkpoint: c})
	})
}

// eachCheckpoint calls fn with the checkpoints after seq after, up to seq last (0: up
// to the last one when the walk began), in order, a page at a time.
func (s *Service) eachCheckpoint(ctx context.Context, after, last int64, fn func(*store.Checkpoint) error) error {
	if last == 0 {
		err := s.read(ctx, func(ctx context.Context, tx store.Tx) error {
			c, err := tx.LastCheckpoint(ctx)
			if errors.Is(err, store.ErrNotFound) {
				last = 0
				return nil
			}
			last = c.Seq
			return err
		})
		if err != nil {
			return err
		}
	}
	const batch = 100
	for after < last {
		var cps []store.Checkpoint
		err := s.read(ctx, func(ctx context.Context, tx store.Tx) error {
			var err error
			cps, err = tx.ListCheckpoints(ctx, after, batch)
			return err
		})
		if err != nil {
			return err
		}
		if len(cps) == 0 {
			return nil
		}
		for i := range cps {
			if cps[i].Seq > last {
				return nil
			}
			if err := fn(&cps[i]); err != nil {
				return err
			}
		}
		after = cps[len(cps)-1].Seq
	}
	return nil
}
