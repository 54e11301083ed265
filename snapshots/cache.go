package snapshots

import (
	"fmt"

	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/agate-pdp/agate/decision"
)

// DefaultCacheSize is how many compiled snapshots a replica keeps by default. Old
// snapshots stay reachable (approvals and audits name them); a miss only costs a compile.
const DefaultCacheSize = 64

// Cache holds compiled snapshots keyed by snapshot id. It is safe for concurrent use.
type Cache struct {
	lru *lru.Cache[string, *decision.Engine]
}

// NewCache returns a cache of at most size compiled snapshots.
func NewCache(size int) (*Cache, error) {
	if size <= 0 {
		return nil, fmt.Errorf("snapshots: cache size must be positive, got %d", size)
	}
	c, err := lru.New[string, *decision.Engine](size)
	if err != nil {
		return nil, err
	}
	return &Cache{lru: c}, nil
}

// Engine returns the compiled form of s, compiling (after checking the digest) on a miss.
func (c *Cache) Engine(s Snapshot) (*decision.Engine, error) {
	if e, ok := c.lru.Get(s.ID); ok {
		return e, nil
	}
	if err := s.Verify(); err != nil {
		return nil, err
	}
	p, err := decision.Parse(s.Source)
	if err != nil {
		return nil, fmt.Errorf("snapshots: stored snapshot %s no longer parses: %w", s.ID, err)
	}
	e, err := decision.Compile(p)
	if err != nil {
		return nil, err
	}
	c.lru.Add(s.ID, e)
	return e, nil
}

// Add stores an already compiled engine, so a snapshot just created is not compiled twice.
func (c *Cache) Add(id string, e *decision.Engine) { c.lru.Add(id, e) }

// Len reports how many compiled snapshots are cached.
func (c *Cache) Len() int { return c.lru.Len() }
