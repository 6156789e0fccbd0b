# Director d3 of a three-director pool on 127.0.0.1, for trying Troop by hand and for tests.
# Start all three (deploy/lab/loopback.sh does): troop agent -config deploy/examples/loopback/d3.hcl
node_id   = "d3"
data_dir  = "/tmp/troop-loopback/d3"
log_level = "info"

api {
  address = "127.0.0.1:9730"
}

director {
  # Three agents share this one kernel: only one dataplane could own it, so none runs.
  enabled = false
}

raft {
  address = "127.0.0.1:9731"

  # Every director lists the same peers, so each bootstraps the same three-voter pool.
  peer "d1" { address = "127.0.0.1:9711" }
  peer "d2" { address = "127.0.0.1:9721" }
  peer "d3" { address = "127.0.0.1:9731" }
}

gossip {
  address = "127.0.0.1:9732"
  join    = ["127.0.0.1:9712", "127.0.0.1:9722", "127.0.0.1:9732"]
  # The pool's shared gossip key, base64 of 32 random bytes. This one is published: make your own
  # (head -c 32 /dev/urandom | base64) and keep it in a key_file readable by the agent only.
  key     = "mJEEAXb567EmMoP5UcJQnrzYo6BetCoomnofBN6NHnw="
}
