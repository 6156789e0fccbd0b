//go:build linux

package director

import (
	"errors"
	"fmt"
	"os"
	"sync"

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

// NewSyncDaemons opens the kernel's IPVS sync-daemon control over generic netlink.
//
// Like NewIPVS, the socket is opened in the network namespace of the calling OS thread and stays
// bound to it. It fails when the kernel has no IPVS. The daemons use the kernel's defaults for
// what Troop does not set: multicast group 224.0.0.81, port 8848, TTL 1, and a message size from
// the interface's MTU. The result is safe for concurrent use.
func NewSyncDaemons() (SyncDaemons, error) {
	c, err := genetlink.Dial(nil)
	if err != nil {
		return nil, fmt.Errorf("open IPVS sync daemon control: %w", err)
	}
	return newSyncDaemons(c)
}

// newSyncDaemons looks the IPVS family up on an opened connection, which it then owns (and
// closes on failure); tests pass a genltest connection.
func newSyncDaemons(c *genetlink.Conn) (*kernelSyncDaemons, error) {
	f, err := c.GetFamily(ipvsGenlName)
	if err != nil {
		c.Close()
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("open IPVS sync daemon control: generic netlink family %q not found (is the ip_vs module loaded?): %w", ipvsGenlName, err)
		}
		return nil, fmt.Errorf("open IPVS sync daemon control: %w", err)
	}
	return &kernelSyncDaemons{c: c, family: f.ID}, nil
}

// kernelSyncDaemons implements SyncDaemons with the IPVS family's daemon commands.
type kernelSyncDaemons struct {
	c      *genetlink.Conn // safe for concurrent use
	family uint16

	closeOnce sync.Once
	closeErr  error
}

var _ SyncDaemons = (*kernelSyncDaemons)(nil)

// Daemons lists the running daemons. GET_DAEMON is a dump: one message per running role, the
// master first; none running is an empty dump.
func (k *kernelSyncDaemons) Daemons() ([]SyncDaemon, error) {
	msgs, err := k.c.Execute(genetlink.Message{
		Header: genetlink.Header{Command: ipvsCmdGetDaemon, Version: ipvsGenlVersion},
	}, k.family, netlink.Request|netlink.Dump)
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

// StartDaemon starts the daemon of d.State on d.Interface.
func (k *kernelSyncDaemons) StartDaemon(d SyncDaemon) error {
	data, err := encodeStartDaemon(d)
	if err == nil {
		_, err = k.c.Execute(genetlink.Message{
			Header: genetlink.Header{Command: ipvsCmdNewDaemon, Version: ipvsGenlVersion},
			Data:   data,
		}, k.family, netlink.Request|netlink.Acknowledge)
	}
	if err != nil {
		return fmt.Errorf("start IPVS sync daemon %s on %q (syncid %d): %w", syncStateName(d.State), d.Interface, d.SyncID, err)
	}
	return nil
}

// StopDaemon stops the daemon of a role.
func (k *kernelSyncDaemons) StopDaemon(s SyncState) error {
	data, err := encodeStopDaemon(s)
	if err == nil {
		_, err = k.c.Execute(genetlink.Message{
			Header: genetlink.Header{Command: ipvsCmdDelDaemon, Version: ipvsGenlVersion},
			Data:   data,
		}, k.family, netlink.Request|netlink.Acknowledge)
	}
	if err != nil {
		return fmt.Errorf("stop IPVS sync daemon %s: %w", syncStateName(s), err)
	}
	return nil
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
