package cluster

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"
)

// ErrDataDirLocked means another process (or another Node in this one) has the data directory's
// Raft store open. Two agents must never share a data directory.
var ErrDataDirLocked = errors.New("data directory is locked by another process")

const (
	// storeOpenTimeout bounds the wait for bbolt's file lock; bbolt's default waits forever, which
	// would hang a second agent started on the same data directory.
	storeOpenTimeout = time.Second
	// logCacheSize is how many recent log entries are kept in memory in front of bbolt, so that
	// replication to followers rarely reads the disk.
	logCacheSize = 512
	// snapshotsRetained is how many snapshots stay on disk.
	snapshotsRetained = 2
)

// stores is the node's Raft storage: log, stable store and snapshots.
type stores struct {
	logs   raft.LogStore
	stable raft.StableStore
	snaps  raft.SnapshotStore
	close  func() error
}

// openDiskStores opens DataDir/raft/raft.db (bbolt, with a log cache in front) and
// DataDir/raft/snapshots.
func openDiskStores(dataDir string, logger hclog.Logger) (*stores, error) {
	dir := filepath.Join(dataDir, "raft")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create raft directory: %w", err)
	}
	path := filepath.Join(dir, "raft.db")
	opts := *bbolt.DefaultOptions
	opts.Timeout = storeOpenTimeout
	bolt, err := raftboltdb.New(raftboltdb.Options{Path: path, BoltOptions: &opts})
	if errors.Is(err, bbolt.ErrTimeout) {
		return nil, fmt.Errorf("open raft store %s: %w (gave up after %s; is another troop agent using this data directory?)", path, ErrDataDirLocked, storeOpenTimeout)
	}
	if err != nil {
		return nil, fmt.Errorf("open raft store %s: %w", path, err)
	}
	cache, err := raft.NewLogCache(logCacheSize, bolt)
	if err != nil {
		bolt.Close()
		return nil, fmt.Errorf("create raft log cache: %w", err)
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, snapshotsRetained, logger)
	if err != nil {
		bolt.Close()
		return nil, fmt.Errorf("open snapshot store in %s: %w", dir, err)
	}
	return &stores{logs: cache, stable: bolt, snaps: snaps, close: bolt.Close}, nil
}

// memStores returns in-memory storage (Dev mode and tests): nothing survives the process.
func memStores() *stores {
	m := raft.NewInmemStore()
	return &stores{logs: m, stable: m, snaps: raft.NewInmemSnapshotStore(), close: func() error { return nil }}
}
