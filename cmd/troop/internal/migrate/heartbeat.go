package migrate

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/troop-lb/troop/cmd/troop/internal/config"
	"github.com/troop-lb/troop/fsm"
)

// HeartbeatInput is a Heartbeat (v1, haresources style) configuration: ha.cf, haresources and,
// optionally, authkeys, with the names to report them by.
type HeartbeatInput struct {
	HaCFName, HaResourcesName, AuthKeysName string
	HaCF, HaResources                       []byte
	// AuthKeys is nil when no authkeys file was given.
	AuthKeys []byte
	// Rand makes the new keys (crypto/rand.Reader; tests pass a fixed stream).
	Rand io.Reader
}

// File is one file an importer proposes.
type File struct {
	Name    string
	Content []byte
	// Secret files hold keys: write them 0600.
	Secret bool
}

// HeartbeatResult is the proposed agent configuration: one agent file per director (and a
// witness for a two-node cluster), and a table file with the haresources VIPs as a VIP group.
type HeartbeatResult struct {
	Files    []File
	Findings []Finding
}

// Heartbeat's defaults (ha.cf(5)).
const (
	hbKeepalive = 2 * time.Second
	hbDeadtime  = 30 * time.Second
	hbBaud      = 19200
)

// witnessID is the node ID of the witness proposed for a two-node Heartbeat cluster.
const witnessID = "witness"

type hbConfig struct {
	nodes               []string
	nodeLine            map[string]int
	keepalive, deadtime time.Duration
	keepaliveLine       int
	device              string
	baud                int
}

// Heartbeat proposes agent configurations for the directors of a Heartbeat cluster.
func Heartbeat(in HeartbeatInput) (*HeartbeatResult, error) {
	fs := &findings{file: in.HaCFName}
	hb, err := parseHaCF(in.HaCFName, in.HaCF, fs)
	if err != nil {
		return nil, err
	}
	rfs := &findings{file: in.HaResourcesName}
	group, err := parseHaResources(in.HaResourcesName, in.HaResources, hb, rfs)
	if err != nil {
		return nil, err
	}
	afs := &findings{file: in.AuthKeysName}
	authNote, err := parseAuthKeys(in.AuthKeysName, in.AuthKeys, afs)
	if err != nil {
		return nil, err
	}

	ids, err := nodeIDs(hb.nodes)
	if err != nil {
		return nil, errorf(in.HaCFName, hb.nodeLine[hb.nodes[0]], "%v", err)
	}
	gossipKey, err := newKey(in.Rand)
	if err != nil {
		return nil, err
	}
	serialKey, err := newKey(in.Rand)
	if err != nil {
		return nil, err
	}
	serial := hb.device != "" && len(hb.nodes) == 2
	if hb.device != "" && len(hb.nodes) != 2 {
		fs.add(0, "serial %s: a serial link joins two directors and this cluster has %d; write serial blocks by hand for the pairs that are cabled", hb.device, len(hb.nodes))
	}
	if len(hb.nodes) == 2 {
		fs.add(hb.nodeLine[hb.nodes[1]], "two nodes: Raft needs a third vote to fail over, so a witness (%s.hcl, `troop agent` with witness = true on a small third machine) is proposed; give it a real address", witnessID)
	}

	peers := ids
	if len(hb.nodes) == 2 {
		peers = append(ids[:len(ids):len(ids)], witnessID)
	}
	var res HeartbeatResult
	for i, n := range hb.nodes {
		var b bytes.Buffer
		fmt.Fprintf(&b, "# Proposed by `troop import heartbeat` from %s, %s", in.HaCFName, in.HaResourcesName)
		if in.AuthKeys != nil {
			fmt.Fprintf(&b, " and %s", in.AuthKeysName)
		}
		fmt.Fprintf(&b, ".\n# Install as /etc/troop/agent.hcl on %s (Heartbeat node %q, %s:%d), mode 0600: it holds keys.\n", n, n, in.HaCFName, hb.nodeLine[n])
		fmt.Fprintf(&b, "node_id   = %q\ndata_dir  = \"/var/lib/troop\"\nlog_level = \"info\"\n\n", ids[i])
		b.WriteString("api {\n  address = \"127.0.0.1:9700\"\n}\n\n")
		writeRaft(&b, hb, peers, n)
		writeDirector(&b, group)
		writeGossip(&b, gossipKey)
		if serial {
			peer := ids[1-i]
			writeSerial(&b, hb, peer, serialKey, authNote)
		}
		res.Files = append(res.Files, File{Name: ids[i] + ".hcl", Content: b.Bytes(), Secret: true})
	}
	if len(hb.nodes) == 2 {
		var b bytes.Buffer
		b.WriteString("# Proposed by `troop import heartbeat`: the third Raft vote a two-director pool needs.\n")
		b.WriteString("# A witness votes, holds no VIP and runs no IPVS or checks; any small machine will do.\n")
		b.WriteString("# Replace witness.invalid with its address here and in the directors' files.\n")
		fmt.Fprintf(&b, "node_id   = %q\ndata_dir  = \"/var/lib/troop\"\nlog_level = \"info\"\nwitness   = true\n\n", witnessID)
		b.WriteString("api {\n  address = \"127.0.0.1:9700\"\n}\n\n")
		writeRaft(&b, hb, peers, "witness.invalid")
		writeGossip(&b, gossipKey)
		res.Files = append(res.Files, File{Name: witnessID + ".hcl", Content: b.Bytes(), Secret: true})
	}
	for _, f := range res.Files {
		if _, err := config.ParseAgent(f.Name, f.Content); err != nil {
			return nil, fmt.Errorf("%s: the proposed agent file does not validate (a bug in troop import):\n%w", f.Name, err)
		}
	}
	if len(group.VIPs) > 0 {
		t := fsm.Table{VIPGroups: []fsm.VIPGroup{group}}
		out, err := render(in.HaResourcesName, "The VIPs of "+in.HaResourcesName+", imported by `troop import heartbeat`: add this vip_group\nto the table file (`troop import ldirectord` makes the services), then troop apply -f it.", t, nil)
		if err != nil {
			return nil, err
		}
		res.Files = append(res.Files, File{Name: "vip-group.hcl", Content: out})
	}
	res.Findings = append(append(fs.sorted(), rfs.sorted()...), afs.sorted()...)
	return &res, nil
}

func writeRaft(b *bytes.Buffer, hb *hbConfig, ids []string, self string) {
	host := func(i int) string {
		if i < len(hb.nodes) {
			return hb.nodes[i]
		}
		return "witness.invalid"
	}
	b.WriteString("raft {\n")
	b.WriteString("  # The node names of ha.cf (uname -n): each must resolve to that director's address on the\n  # network between the directors, or replace it with the address.\n")
	fmt.Fprintf(b, "  address = %q\n\n", self+":9701")
	for i, id := range ids {
		fmt.Fprintf(b, "  peer %q { address = %q }\n", id, host(i)+":9701")
	}
	fmt.Fprintf(b, "\n  # Heartbeat declared a node dead after deadtime %s (keepalive %s). Raft's defaults\n", hb.deadtime, hb.keepalive)
	b.WriteString("  # (heartbeat_timeout 300ms, election_timeout 300ms, leader_lease_timeout 150ms) fail over in\n")
	b.WriteString("  # about 0.8 s on a LAN; set them higher only on a slow or lossy network between directors.\n")
	b.WriteString("  # heartbeat_timeout    = \"300ms\"\n  # election_timeout     = \"300ms\"\n  # leader_lease_timeout = \"150ms\"\n}\n\n")
}

func writeDirector(b *bytes.Buffer, g fsm.VIPGroup) {
	b.WriteString("director {\n")
	if g.Interface != "" {
		fmt.Fprintf(b, "  interface = %q   # from haresources\n", g.Interface)
	} else {
		b.WriteString("  # interface = \"eth0\"   # the interface Heartbeat's IPaddr put the VIP on (it found it from the routes)\n")
	}
	b.WriteString("}\n\n")
}

func writeGossip(b *bytes.Buffer, key string) {
	b.WriteString("gossip {\n  # A new key, the same in every file; or move it to key_file (mode 0600).\n")
	fmt.Fprintf(b, "  key = %q\n}\n", key)
}

func writeSerial(b *bytes.Buffer, hb *hbConfig, peer, key, authNote string) {
	b.WriteString("\nserial {\n")
	fmt.Fprintf(b, "  peer      = %q\n  device    = %q\n  baud      = %d\n", peer, hb.device, hb.baud)
	fmt.Fprintf(b, "  keepalive = %q\n  deadtime  = %q\n", formatDur(hb.keepalive), formatDur(hb.deadtime))
	fmt.Fprintf(b, "  # A new random key, the same at both ends (HMAC-SHA256): %s\n", authNote)
	fmt.Fprintf(b, "  key       = %q\n}\n", key)
}

func formatDur(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	return s
}

// newKey returns 32 random bytes in base64: a gossip key (AES-256) or a serial link key.
func newKey(r io.Reader) (string, error) {
	k := make([]byte, 32)
	if _, err := io.ReadFull(r, k); err != nil {
		return "", fmt.Errorf("generate a key: %w", err)
	}
	return base64.StdEncoding.EncodeToString(k), nil
}

// nodeIDs turns Heartbeat node names (uname -n) into node IDs: the short host name when that
// is unique, else the whole name.
func nodeIDs(nodes []string) ([]string, error) {
	ids := make([]string, len(nodes))
	seen := map[string]bool{}
	short := true
	for _, n := range nodes {
		s, _, _ := strings.Cut(n, ".")
		if seen[s] || s == witnessID {
			short = false
		}
		seen[s] = true
	}
	for i, n := range nodes {
		id := n
		if short {
			id, _, _ = strings.Cut(n, ".")
		}
		if !nameRE.MatchString(id) {
			return nil, fmt.Errorf("node %q: a node ID must be 1-63 letters, digits, '.', '_' or '-'", n)
		}
		ids[i] = id
	}
	return ids, nil
}

// hbDuration reads a Heartbeat time: seconds, or with an ms/s/us suffix.
func hbDuration(s string) (time.Duration, bool) {
	switch {
	case strings.HasSuffix(s, "ms"):
		n, err := strconv.ParseFloat(strings.TrimSuffix(s, "ms"), 64)
		return time.Duration(n * float64(time.Millisecond)), err == nil && n > 0
	case strings.HasSuffix(s, "us"):
		n, err := strconv.ParseFloat(strings.TrimSuffix(s, "us"), 64)
		return time.Duration(n * float64(time.Microsecond)), err == nil && n > 0
	}
	return seconds(strings.TrimSuffix(s, "s"))
}

// hbUnsupported says why an ha.cf directive is not carried over.
var hbUnsupported = map[string]string{
	"logfile":                 "Troop logs to stderr (the journal)",
	"debugfile":               "Troop logs to stderr (the journal); log_level = \"debug\" for more",
	"logfacility":             "Troop logs to stderr (the journal)",
	"use_logd":                "Troop logs to stderr (the journal)",
	"debug":                   "use log_level = \"debug\"",
	"warntime":                "no late-heartbeat warning; `troop members` shows each director's state",
	"initdead":                "not needed: a starting director joins Raft as soon as it reaches a quorum",
	"udpport":                 "Raft (9701/tcp) and gossip (9702/tcp+udp) use their own ports",
	"bcast":                   "Raft and gossip talk to the peers' addresses (raft peer blocks); no broadcast",
	"mcast":                   "Raft and gossip talk to the peers' addresses (raft peer blocks); no multicast",
	"ucast":                   "Raft and gossip talk to the peers' addresses: put each director's address in its peer block",
	"auto_failback":           "Raft has no preferred director: a leader keeps the VIPs until it fails or hands over (`troop operator raft transfer-leader ID`)",
	"watchdog":                "no watchdog; systemd restarts the agent",
	"ping":                    "no ping nodes: Raft's quorum decides who may hold the VIPs",
	"ping_group":              "no ping nodes: Raft's quorum decides who may hold the VIPs",
	"respawn":                 "systemd runs the agent",
	"crm":                     "Troop manages VIPs and IPVS only, not a cluster resource manager",
	"stonith":                 "no STONITH: a leader without a quorum drops the VIPs itself (lease), and the serial link fences",
	"stonith_host":            "no STONITH: a leader without a quorum drops the VIPs itself (lease), and the serial link fences",
	"apiauth":                 "no Heartbeat API",
	"hopfudge":                "serial links are point to point",
	"realtime":                "not needed",
	"coredumps":               "not needed",
	"compression":             "not needed",
	"traditional_compression": "not needed",
}

// fields splits a Heartbeat configuration line into words, without its # comment.
func fields(line string) []string {
	if j := strings.IndexByte(line, '#'); j >= 0 {
		line = line[:j]
	}
	return strings.Fields(line)
}

func parseHaCF(file string, src []byte, fs *findings) (*hbConfig, error) {
	hb := &hbConfig{keepalive: hbKeepalive, deadtime: hbDeadtime, baud: hbBaud, nodeLine: map[string]int{}}
	var deadLine int
	for i, line := range strings.Split(string(src), "\n") {
		n, f := i+1, fields(line)
		if len(f) == 0 {
			continue
		}
		key, args := strings.ToLower(f[0]), f[1:]
		need := func(min, max int) error {
			if len(args) < min || (max > 0 && len(args) > max) {
				return errorf(file, n, "%s: wrong number of values", key)
			}
			return nil
		}
		switch key {
		case "keepalive", "deadtime":
			if err := need(1, 1); err != nil {
				return nil, err
			}
			d, ok := hbDuration(args[0])
			if !ok {
				return nil, errorf(file, n, "%s %s: want seconds, or a time like 500ms", key, args[0])
			}
			if key == "keepalive" {
				hb.keepalive, hb.keepaliveLine = d, n
			} else {
				hb.deadtime, deadLine = d, n
			}
		case "serial":
			if err := need(1, 0); err != nil {
				return nil, err
			}
			if hb.device != "" || len(args) > 1 {
				fs.add(n, "serial: one link per pair of directors; only %s is proposed", firstNonEmpty(hb.device, args[0]))
			}
			if hb.device == "" {
				hb.device = args[0]
			}
		case "baud":
			if err := need(1, 1); err != nil {
				return nil, err
			}
			b, err := strconv.Atoi(args[0])
			if err != nil || b <= 0 {
				return nil, errorf(file, n, "baud %s: want a number", args[0])
			}
			hb.baud = b
		case "node":
			if err := need(1, 0); err != nil {
				return nil, err
			}
			for _, name := range args {
				if _, dup := hb.nodeLine[name]; dup {
					return nil, errorf(file, n, "node %s is listed twice", name)
				}
				hb.nodeLine[name] = n
				hb.nodes = append(hb.nodes, name)
			}
		default:
			reason, ok := hbUnsupported[key]
			if !ok {
				reason = "unknown to troop import; no equivalent"
			}
			fs.add(n, "%s: not imported: %s", strings.Join(f, " "), reason)
		}
	}
	if len(hb.nodes) == 0 {
		return nil, errorf(file, 1, "no node lines: the directors are not known")
	}
	if hb.deadtime < 2*hb.keepalive {
		fs.add(deadLine, "deadtime %s is under twice keepalive %s, which Troop's serial link refuses; %s is used", hb.deadtime, hb.keepalive, 2*hb.keepalive)
		hb.deadtime = 2 * hb.keepalive
	}
	return hb, nil
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// parseHaResources reads the VIPs out of haresources. Each line (with \ continuations) is a
// preferred node followed by resources; an address, IPaddr::, IPaddr2:: or IPv6addr:: is a VIP.
func parseHaResources(file string, src []byte, hb *hbConfig, fs *findings) (fsm.VIPGroup, error) {
	g := fsm.VIPGroup{Name: "heartbeat"}
	lines := strings.Split(string(src), "\n")
	for i := 0; i < len(lines); i++ {
		n := i + 1
		line := lines[i]
		for strings.HasSuffix(strings.TrimSpace(line), "\\") && i+1 < len(lines) {
			i++
			line = strings.TrimSuffix(strings.TrimSpace(line), "\\") + " " + lines[i]
		}
		f := fields(line)
		if len(f) == 0 {
			continue
		}
		if _, ok := hb.nodeLine[f[0]]; !ok {
			return g, errorf(file, n, "%s is not a node of ha.cf (%s)", f[0], strings.Join(hb.nodes, ", "))
		}
		fs.add(n, "preferred node %s: Raft has no preferred director (the leader holds every VIP); `troop operator raft transfer-leader` moves it by hand", f[0])
		for _, res := range f[1:] {
			kind, args, _ := strings.Cut(res, "::")
			if _, err := netip.ParseAddr(res); err == nil {
				args, kind = res, "IPaddr" // a bare address is IPaddr's shorthand
			}
			switch kind {
			case "IPaddr", "IPaddr2", "IPv6addr":
				parts := strings.Split(args, "/")
				a, err := netip.ParseAddr(parts[0])
				if err != nil {
					return g, errorf(file, n, "%s: %q is not an IP address", res, parts[0])
				}
				bits := a.BitLen()
				if len(parts) > 1 && parts[1] != "" {
					b, ok := prefixOfMask(parts[1], a.BitLen())
					if !ok {
						return g, errorf(file, n, "%s: bad netmask %q", res, parts[1])
					}
					bits = b
				} else {
					fs.add(n, "%s: no netmask: Heartbeat took it from the interface's route; the VIP is imported as /%d, write the prefix (e.g. %s/25) if clients on that subnet must reach it directly", res, bits, a)
				}
				if len(parts) > 2 && parts[2] != "" {
					iface, _, _ := strings.Cut(parts[2], ":") // eth0:0 is an alias label
					if g.Interface != "" && g.Interface != iface {
						fs.add(n, "%s: a second interface %s; every VIP of a group is on one interface, so it is imported on %s", res, iface, g.Interface)
					} else {
						g.Interface = iface
					}
				}
				if len(parts) > 3 {
					fs.add(n, "%s: the broadcast address is not imported (the kernel derives it)", res)
				}
				g.VIPs = append(g.VIPs, netip.PrefixFrom(a, bits))
			case "ldirectord":
				fs.add(n, "%s: replaced by Troop itself: import ldirectord.cf with `troop import ldirectord`", res)
			default:
				hint := ""
				if strings.HasPrefix(kind, "ldir") {
					hint = " (ldirectord misspelled? Heartbeat could not have started it either)"
				}
				fs.add(n, "resource %s: not imported: Troop moves VIPs and IPVS only%s", res, hint)
			}
		}
	}
	if len(g.VIPs) == 0 {
		fs.add(0, "no VIP found")
	}
	fsm.NormalizeGroup(&g)
	if err := fsm.ValidateGroup(&g); err != nil {
		return g, errorf(file, 1, "%v", err)
	}
	return g, nil
}

// parseAuthKeys reads authkeys for what to say about it; its keys are never reused.
func parseAuthKeys(file string, src []byte, fs *findings) (string, error) {
	if src == nil {
		return "no authkeys given", nil
	}
	active, activeLine := "", 0
	methods := map[string]string{}
	lines := map[string]int{}
	for i, line := range strings.Split(string(src), "\n") {
		n, f := i+1, fields(line)
		if len(f) == 0 {
			continue
		}
		if f[0] == "auth" {
			if len(f) != 2 {
				return "", errorf(file, n, "auth: want one key index")
			}
			active, activeLine = f[1], n
			continue
		}
		if _, err := strconv.Atoi(f[0]); err != nil || len(f) < 2 {
			return "", errorf(file, n, "want \"auth N\" or \"N crc|md5 KEY|sha1 KEY\"")
		}
		m := strings.ToLower(f[1])
		switch m {
		case "crc":
		case "md5", "sha1":
			if len(f) < 3 {
				return "", errorf(file, n, "%s needs a key", m)
			}
		default:
			return "", errorf(file, n, "unknown method %q: want crc, md5 or sha1", f[1])
		}
		methods[f[0]], lines[f[0]] = m, n
	}
	if active == "" {
		return "", errorf(file, 1, "no \"auth N\" line")
	}
	m, ok := methods[active]
	if !ok {
		return "", errorf(file, activeLine, "auth %s: no key %s in the file", active, active)
	}
	n := lines[active]
	switch m {
	case "crc":
		fs.add(n, "INSECURE: crc is a checksum, not authentication: anyone who can write to the link can forge heartbeats; a new random key is generated")
		return "authkeys used crc, which authenticates nothing", nil
	case "md5":
		fs.add(n, "INSECURE: md5 keyed hashes are obsolete and the key is a passphrase; a new random key is generated")
		return "authkeys used md5, which is obsolete", nil
	}
	fs.add(n, "sha1: the key is not reused: it is a passphrase in an old file (often short, and in backups), and Troop's link uses HMAC-SHA256 with a random key of its own, so rotating one never weakens the other")
	return "authkeys' sha1 passphrase is not reused", nil
}
