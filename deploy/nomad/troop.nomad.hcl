# Troop directors as a Nomad system job: one `troop agent` on every client of node class
# "lvs-director". See README.md next to this file for the host preparation and the rolling upgrade.
#
#   nomad var put nomad/jobs/troop gossip_key="$(head -c 32 /dev/urandom | base64)"
#   nomad job run -var 'troop_version=0.3.0' -var 'troop_sha256=<sha256 of the archive>' troop.nomad.hcl

variable "troop_version" {
  type        = string
  description = "Troop release to run; changing it is what rolls the directors one at a time."
  default     = "0.3.0"
}

variable "troop_sha256" {
  type        = string
  description = "SHA-256 of the release archive: Nomad refuses an artifact that does not match."
}

variable "artifact_base" {
  type        = string
  description = "Where release archives live: ARTIFACT_BASE/vVERSION/troop_linux_amd64.tar.gz holds the troop binary."
  default     = "https://releases.example.com/troop"
}

variable "raft_join" {
  type        = list(string)
  description = "Raft addresses of every director (each one skips its own). Their count is bootstrap_expect."
  default     = ["192.0.2.11:9701", "192.0.2.12:9701", "192.0.2.13:9701"]
}

variable "troop_uid" {
  type        = number
  description = "UID of the host user troop (README.md creates it as 9700): the owner of the rendered gossip key."
  default     = 9700
}

job "troop" {
  # One allocation per eligible node: a director per director host, never two on one kernel.
  type = "system"

  constraint {
    attribute = "${node.class}"
    value     = "lvs-director"
  }

  group "director" {
    network {
      # The agent owns VIPs on the host's interface, sends gratuitous ARP / unsolicited NA on it
      # and programs the host's IPVS: it must live in the host network namespace.
      mode = "host"

      # Static ports, reserved on the node so that no other job takes them. The API listens on
      # loopback only (the agent's default): the CLI on the host and the check below reach it there.
      port "api" {
        static = 9700
      }
      port "raft" {
        static = 9701
      }
      port "gossip" {
        static = 9702
      }
    }

    # The Raft log, snapshots and the record of the IPVS services Troop owns must outlive the
    # allocation: an upgrade replaces every allocation, and a director that came back empty would
    # rejoin as a stranger. The client declares the host volume (README.md).
    volume "data" {
      type   = "host"
      source = "troop-data"
    }

    # A director that fails is restarted in place; it adopts the IPVS table it finds.
    restart {
      attempts = 10
      interval = "30m"
      delay    = "10s"
      mode     = "delay"
    }

    # Rolling upgrade: one director at a time, the next only once the replaced one has been ready
    # (caught up with the leader's commit index, IPVS matching the table) for min_healthy_time, so
    # that at most one voter is ever out of the pool. min_healthy_time exceeds gossip's default
    # stabilization_time (5s), after which a rejoining director votes again. A director not ready
    # within healthy_deadline fails the deployment, and auto_revert puts the previous job version
    # back, again one director at a time.
    #
    # Older Nomad releases enforce only max_parallel and stagger for system jobs; stagger keeps the
    # pace sane there too. Run `troop operator upgrade-check` before `nomad job run` either way.
    update {
      max_parallel     = 1
      health_check     = "checks"
      min_healthy_time = "30s"
      healthy_deadline = "5m"
      auto_revert      = true
      stagger          = "30s"
    }

    task "agent" {
      # exec, not raw_exec: exec can grant exactly the two capabilities the agent needs
      # (cap_add; working for a non-root task user since hashicorp/nomad#16643), runs the task as
      # an unprivileged user and chroots it. raw_exec would run it as the Nomad client's user,
      # root, with every capability. The client must allow the two: plugin "exec" { config {
      # allow_caps = [..., "net_admin", "net_raw"] } } (README.md).
      #
      # exec mounts /proc/sys read-only inside the task, so the agent cannot set
      # net.ipv4.vs.expire_nodest_conn and expire_quiescent_template itself (it logs a warning and
      # carries on): the host sets them from /etc/sysctl.d (README.md).
      driver = "exec"
      user   = "troop"

      config {
        command  = "local/troop"
        args     = ["agent", "-config", "local/agent.hcl"]
        cap_drop = ["all"]
        cap_add  = ["net_admin", "net_raw"]
      }

      artifact {
        source      = "${var.artifact_base}/v${var.troop_version}/troop_linux_amd64.tar.gz"
        destination = "local/"
        options {
          checksum = "sha256:${var.troop_sha256}"
        }
      }

      volume_mount {
        volume      = "data"
        destination = "/var/lib/troop"
      }

      # The agent configuration, from the node itself: its name is the Raft node ID (it must match
      # [A-Za-z0-9._-]{1,63}), its address carries Raft and gossip, and node meta may name the
      # VIP and sync-daemon interfaces (default eth0). change_mode "noop": nothing here changes
      # while the node lives, and a configuration change goes through a job update, which rolls;
      # a re-render must never restart every director at once.
      template {
        destination = "local/agent.hcl"
        change_mode = "noop"
        data        = <<-EOT
          node_id   = "{{ env "node.unique.name" }}"
          data_dir  = "/var/lib/troop"
          log_level = "info"

          api {
            address = "127.0.0.1:9700"
          }

          raft {
            address          = "{{ env "attr.unique.network.ip-address" }}:9701"
            bootstrap_expect = ${length(var.raft_join)}
            join             = ${jsonencode(var.raft_join)}
          }

          director {
            interface = "{{ or (env "meta.troop_interface") "eth0" }}"
            sync_daemon {
              interface = "{{ or (env "meta.troop_sync_interface") "eth0" }}"
              sync_id   = 1
            }
          }

          gossip {
            # The gossip address defaults to the Raft address's host, port 9702, and its join list
            # to the Raft join hosts at that port.
            key_file = "{{ env "NOMAD_SECRETS_DIR" }}/gossip.key"
          }
        EOT
      }

      # The pool's gossip key, from the Nomad variable nomad/jobs/troop (item gossip_key), which
      # this job reads through its workload identity with no policy to write. A Nomad variable
      # rather than Vault: a director pool is infrastructure that must come up before, and without,
      # a Vault cluster, and the key is one small secret shared by three hosts. It lands in the
      # task's secrets directory, readable by the task user only. change_mode "noop": every
      # director must hold the same key, so a new one is rolled out by a job update, not by
      # every allocation restarting together the moment the variable changes.
      template {
        destination = "secrets/gossip.key"
        perms       = "0400"
        uid         = var.troop_uid
        change_mode = "noop"
        data        = <<-EOT
          {{ with nomadVar "nomad/jobs/troop" }}{{ .gossip_key }}{{ end }}
        EOT
      }

      # Readiness, not liveness: /v1/agent/ready answers 200 only once this agent has joined Raft,
      # applied the log up to the leader's commit index and matched IPVS to the table. Nomad
      # performs the check from the host, at the service address. No check_restart: a director
      # that is not ready because the pool has lost its quorum must not be killed for it.
      service {
        name     = "troop"
        provider = "nomad"
        port     = "api"
        address  = "127.0.0.1"

        check {
          name     = "ready"
          type     = "http"
          path     = "/v1/agent/ready"
          interval = "5s"
          timeout  = "2s"
        }
      }

      # SIGTERM: a leader hands leadership to an up-to-date follower and waits for it to hold the
      # VIP, then leaves gossip; IPVS is never flushed. 30s is ample, and is also the Nomad
      # client's default max_kill_timeout.
      kill_signal  = "SIGTERM"
      kill_timeout = "30s"

      resources {
        cpu    = 500
        memory = 256
      }
    }
  }
}
