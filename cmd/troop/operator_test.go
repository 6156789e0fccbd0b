package main

import "testing"

func TestOperatorRaft(t *testing.T) {
	c := newCLI(t)
	diffText(t, "list-peers", c.ok("operator", "raft", "list-peers"), `ID  ADDRESS         STATE     VOTER
a   192.0.2.1:9701  leader    true
b   192.0.2.2:9701  follower  true
c   192.0.2.3:9701  follower  true
`)
	diffText(t, "transfer-leader", c.ok("operator", "raft", "transfer-leader"), "Leadership transferred: the leader is \"b\" (term 2).\n")
	diffText(t, "transfer-leader c", c.ok("operator", "raft", "transfer-leader", "c"), "Leadership transferred: the leader is \"c\" (term 3).\n")
	diffText(t, "remove-peer", c.ok("operator", "raft", "remove-peer", "b"), "Removed peer \"b\" from the Raft configuration.\n")
	diffText(t, "list-peers -json", c.ok("operator", "raft", "list-peers", "-json", "-consistent"), `[
  {
    "id": "a",
    "address": "192.0.2.1:9701",
    "voter": true,
    "leader": false
  },
  {
    "id": "c",
    "address": "192.0.2.3:9701",
    "voter": true,
    "leader": true
  }
]
`)
	diffText(t, "transfer to an unknown peer", c.fails(exitError, "operator", "raft", "transfer-leader", "z"),
		"Error: transfer leadership to \"z\": unknown peer\n")
	c.fails(exitUsage, "operator", "raft", "remove-peer")
	c.fails(exitUsage, "operator", "raft", "transfer-leader", "a", "b")
}
