//go:build linux

package director

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/mdlayher/genetlink"
	"github.com/mdlayher/netlink"
)

// The IPVS generic netlink family's sync-daemon commands and attributes
// (include/uapi/linux/ip_vs.h). cloudflare/ipvs has none of them.
const (
	ipvsGenlName    = "IPVS" // IPVS_GENL_NAME
	ipvsGenlVersion = 1      // IPVS_GENL_VERSION

	ipvsCmdNewDaemon = 9  // IPVS_CMD_NEW_DAEMON
	ipvsCmdDelDaemon = 10 // IPVS_CMD_DEL_DAEMON
	ipvsCmdGetDaemon = 11 // IPVS_CMD_GET_DAEMON, dump only

	ipvsCmdAttrDaemon = 3 // IPVS_CMD_ATTR_DAEMON, nested

	ipvsDaemonAttrState     = 1 // IPVS_DAEMON_ATTR_STATE, u32
	ipvsDaemonAttrMcastIfn  = 2 // IPVS_DAEMON_ATTR_MCAST_IFN, NUL-terminated string
	ipvsDaemonAttrSyncID    = 3 // IPVS_DAEMON_ATTR_SYNC_ID, u32
	ipvsDaemonAttrSyncMaxln = 4 // IPVS_DAEMON_ATTR_SYNC_MAXLEN, u16 (kernel's default kept)
)

// syncCommandTimeout bounds the wait for the kernel's answer to a daemon command. The kernel
// sometimes never answers: stopping a daemon whose thread has not run yet (a stop right after a
// start) makes stop_sync_thread return kthread_stop's -EINTR, and netlink_rcv_skb sends no
// acknowledgement at all for -EINTR, although the daemon did stop. Seen on Debian's 6.1 kernel
// under TCG, in two runs out of three of the start-then-stop test. Without a deadline the caller
// would wait forever; with it, the command then checks the outcome with GET_DAEMON.
const syncCommandTimeout = 2 * time.Second

// NewSyncDaemons opens the kernel's IPVS sync-daemon control over generic netlink.
//
// Like NewIPVS, the socket is opened in the network namespace of the calling OS thread and stays
// bound to it. It fails when the kernel has no IPVS. The daemons use the kernel's defaults for
// what Troop does not set: multicast group 224.0.0.81, port 8848, TTL 1, and a message size from
// the interface's MTU. Each command waits at most a few seconds for the kernel (see
// syncCommandTimeout). The result is safe for concurrent use; commands run one at a time.
func NewSyncDaemons() (SyncDaemons, error) {
	c, err := genetlink.Dial(nil)
	if err != nil {
		return nil, fmt.Errorf("open IPVS sync daemon control: %w", err)
	}
	return newSyncDaemons(c, syncCommandTimeout)
}

// newSyncDaemons looks the IPVS family up on an opened connection, which it then owns (and
// closes on failure); tests pass a genltest connection. Each command waits at most timeout for
// its answer (a connection without deadlines, as genltest's, waits as long as it takes).
func newSyncDaemons(c *genetlink.Conn, timeout time.Duration) (*kernelSyncDaemons, error) {
	f, err := c.GetFamily(ipvsGenlName)
	if err != nil {
		c.Close()
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("open IPVS sync daemon control: generic netlink family %q not found (is the ip_vs module loaded?): %w", ipvsGenlName, err)
		}
		return nil, fmt.Errorf("open IPVS sync daemon control: %w", err)
	}
	return &kernelSyncDaemons{c: c, family: f.ID, timeout: timeout}, nil
}

// kernelSyncDaemons implements SyncDaemons with the IPVS family's daemon commands.
type kernelSyncDaemons struct {
	c       *genetlink.Conn
	family  uint16
	timeout time.Duration

	// mu serializes commands: each sets the connection's read deadline for its own answer.
	mu sync.Mutex

	closeOnce sync.Once
	closeErr  error
}

// execute sends one command and waits at most k.timeout for its answer. os.ErrDeadlineExceeded
// means the kernel did not answer in time (see syncCommandTimeout).
func (k *kernelSyncDaemons) execute(cmd uint8, data []byte, flags netlink.HeaderFlags) ([]genetlink.Message, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	// Best effort: a connection that cannot take deadlines (genltest's) simply waits.
	if k.c.SetReadDeadline(time.Now().Add(k.timeout)) == nil {
		defer k.c.SetReadDeadline(time.Time{})
	}
	return k.c.Execute(genetlink.Message{
		Header: genetlink.Header{Command: cmd, Version: ipvsGenlVersion},
		Data:   data,
	}, k.family, flags)
}

var _ SyncDaemons = (*kernelSyncDaemons)(nil)

// Daemons lists the running daemons. GET_DAEMON is a dump: one message per running role, the
// master first; none running is an empty dump.
func (k *kernelSyncDaemons) Daemons() ([]SyncDaemon, error) {
	msgs, err := k.execute(ipvsCmdGetDaemon, nil, netlink.Request|netlink.Dump)
	if err != nil {
		return nil, fmt.Errorf("list IPVS sync daemons: %w", err)
	}
	out := make([]SyncDaemon, 0, len(msgs))
	for _, m := range msgs {
		d, err := decodeDaemonMessage(m.Data)
		if err != nil {
			return nil, fmt.Errorf("list IPVS sync daemons: %w", err)
		}
		out = append(out, d)
	}
	return out, nil
}

// StartDaemon starts the daemon of d.State on d.Interface. If the kernel does not answer in
// time, the daemon counts as started when GET_DAEMON shows it running as asked.
func (k *kernelSyncDaemons) StartDaemon(d SyncDaemon) error {
	data, err := encodeStartDaemon(d)
	if err == nil {
		_, err = k.execute(ipvsCmdNewDaemon, data, netlink.Request|netlink.Acknowledge)
		if errors.Is(err, os.ErrDeadlineExceeded) && k.running(func(ds []SyncDaemon) bool { return slices.Contains(ds, d) }) {
			err = nil
		}
	}
	if err != nil {
		return fmt.Errorf("start IPVS sync daemon %s on %q (syncid %d): %w", syncStateName(d.State), d.Interface, d.SyncID, err)
	}
	return nil
}

// StopDaemon stops the daemon of a role. If the kernel does not answer in time (it never does
// when it stops a daemon whose thread had not run yet), the daemon counts as stopped when
// GET_DAEMON no longer shows the role.
func (k *kernelSyncDaemons) StopDaemon(s SyncState) error {
	data, err := encodeStopDaemon(s)
	if err == nil {
		_, err = k.execute(ipvsCmdDelDaemon, data, netlink.Request|netlink.Acknowledge)
		if errors.Is(err, os.ErrDeadlineExceeded) && k.running(func(ds []SyncDaemon) bool {
			return !slices.ContainsFunc(ds, func(d SyncDaemon) bool { return d.State == s })
		}) {
			err = nil
		}
	}
	if err != nil {
		return fmt.Errorf("stop IPVS sync daemon %s: %w", syncStateName(s), err)
	}
	return nil
}

// running reports whether the running daemons satisfy ok; false if they cannot be listed.
func (k *kernelSyncDaemons) running(ok func([]SyncDaemon) bool) bool {
	ds, err := k.Daemons()
	return err == nil && ok(ds)
}

// Close releases the netlink socket; the daemons keep running. It may be called more than once.
func (k *kernelSyncDaemons) Close() error {
	k.closeOnce.Do(func() {
		if err := k.c.Close(); err != nil {
			k.closeErr = fmt.Errorf("close IPVS sync daemon control: %w", err)
		}
	})
	return k.closeErr
}

// encodeStartDaemon builds NEW_DAEMON's attributes: the nested daemon attribute with the three
// the kernel requires (state, interface, sync id). The nest carries NLA_F_NESTED, which strict
// netlink validation wants and the IPVS family's lenient parser ignores.
func encodeStartDaemon(d SyncDaemon) ([]byte, error) {
	ae := netlink.NewAttributeEncoder()
	ae.Nested(ipvsCmdAttrDaemon, func(nae *netlink.AttributeEncoder) error {
		nae.Uint32(ipvsDaemonAttrState, uint32(d.State))
		nae.String(ipvsDaemonAttrMcastIfn, d.Interface)
		nae.Uint32(ipvsDaemonAttrSyncID, uint32(d.SyncID))
		return nil
	})
	return ae.Encode()
}

// encodeStopDaemon builds DEL_DAEMON's attributes: the nested daemon attribute with the state.
func encodeStopDaemon(s SyncState) ([]byte, error) {
	ae := netlink.NewAttributeEncoder()
	ae.Nested(ipvsCmdAttrDaemon, func(nae *netlink.AttributeEncoder) error {
		nae.Uint32(ipvsDaemonAttrState, uint32(s))
		return nil
	})
	return ae.Encode()
}

// decodeDaemonMessage reads one GET_DAEMON reply. The kernel also sends the message size,
// multicast group, port and TTL; Troop leaves them at their defaults and ignores them.
func decodeDaemonMessage(b []byte) (SyncDaemon, error) {
	var d SyncDaemon
	var found bool
	ad, err := netlink.NewAttributeDecoder(b)
	if err != nil {
		return d, err
	}
	for ad.Next() {
		if ad.Type() != ipvsCmdAttrDaemon {
			continue
		}
		found = true
		ad.Nested(func(nad *netlink.AttributeDecoder) error {
			for nad.Next() {
				switch nad.Type() {
				case ipvsDaemonAttrState:
					d.State = SyncState(nad.Uint32())
				case ipvsDaemonAttrMcastIfn:
					d.Interface = nad.String()
				case ipvsDaemonAttrSyncID:
					// The kernel keeps the sync id in a u8 and sends it as a u32.
					d.SyncID = uint8(nad.Uint32())
				}
			}
			return nil
		})
	}
	if err := ad.Err(); err != nil {
		return d, err
	}
	if !found {
		return d, errors.New("sync daemon message without a daemon attribute")
	}
	return d, nil
}

func syncStateName(s SyncState) string {
	switch s {
	case SyncMaster:
		return "master"
	case SyncBackup:
		return "backup"
	}
	return fmt.Sprintf("state-%d", uint32(s))
}
