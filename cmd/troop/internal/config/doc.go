// Package config reads Troop's two HCL files: the declarative virtual-service table that
// `troop plan -f` and `troop apply -f` send (ParseTable, written back by FormatTable), and the
// agent configuration (ParseAgent).
//
// Both parsers are strict, in the manner of Consul's config builder: an unknown key or block, a
// value of the wrong type, or one that does not parse is an error, never silently ignored,
// because a typo in a load balancer's config otherwise surfaces as an outage. Every problem is
// reported as "file:line:col: message", the message naming the field path and quoting the
// value, and all problems found in one pass are returned together (Diagnostics). Bad input
// yields an error and no value, so nothing half-read reaches the cluster.
//
// The table's field names are the JSON names of the fsm structs, so a table reads the same in
// HCL, in the HTTP API and in snapshots. Its semantics (defaults, limits, cross-field rules)
// belong to fsm.NormalizeTable and fsm.ValidateTable; this package only decodes the syntax and
// maps each *fsm.FieldError back to the line that caused it.
package config
