package cluster_test

import (
	"github.com/troop-lb/troop/api"
	"github.com/troop-lb/troop/cluster"
)

// The API serves a *cluster.Node.
var _ api.Backend = (*cluster.Node)(nil)
