# Director d2 of a three-director pool on one LAN (documentation addresses): the seed's
# UltraMonkey topology, directors 192.0.2.11-13 on eth0, the table in table.hcl.
# Install as /etc/troop/agent.hcl on 192.0.2.12; deploy/systemd runs it as
#   troop agent -config /etc/troop/agent.hcl
node_id   = "d2"
data_dir  = "/var/lib/troop"
log_level = "info"

api {
  # Loopback: the CLI on this host reaches it at its default address.
  address = "127.0.0.1:9700"
}

raft {
  address = "192.0.2.12:9701"

  # Every director lists the same peers, so each bootstraps the same three-voter pool.
  peer "d1" { address = "192.0.2.11:9701" }
  peer "d2" { address = "192.0.2.12:9701" }
  peer "d3" { address = "192.0.2.13:9701" }
}

director {
  interface = "eth0"   # holds the VIP 192.0.2.100 on the leader

  sync_daemon {        # IPVS connection sync: master on the leader, backup on the others
    interface = "eth0"
    sync_id   = 1
  }
}

gossip {
  # address defaults to 192.0.2.12:9702 and join to the peers' hosts at port 9702.
  # The same key on every director: head -c 32 /dev/urandom | base64 > /etc/troop/gossip.key
  key_file = "/etc/troop/gossip.key"
}
