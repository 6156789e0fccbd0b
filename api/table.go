package api

import (
	"bytes"
	"fmt"
	"net/http"
	"reflect"

	"github.com/troop-lb/troop/fsm"
)

func (s *Server) getTable(w http.ResponseWriter, r *http.Request) error {
	st, err := s.view(w, r)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, st.Table())
	return nil
}

// planTable answers POST /v1/table?plan: what PUT /v1/table would change, computed against the
// state the read rules give (local, or leader-verified with ?consistent). Nothing is proposed.
func (s *Server) planTable(w http.ResponseWriter, r *http.Request) error {
	if plan, err := queryFlag(r, "plan"); err != nil || !plan {
		return badRequest("plan", "", "POST /v1/table needs ?plan (it only plans); PUT /v1/table applies")
	}
	t, err := decodeTable(w, r)
	if err != nil {
		return err
	}
	st, err := s.view(w, r)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, TableDiff{BaseIndex: st.Index(), Diff: nonNil(fsm.Diff(st.Table(), t))})
	return nil
}

// applyTable answers PUT /v1/table: it replaces the whole table in one entry and returns the
// diff against the leader-verified state read just before proposing.
func (s *Server) applyTable(w http.ResponseWriter, r *http.Request) error {
	t, err := decodeTable(w, r)
	if err != nil {
		return err
	}
	return s.replace(w, r, t, fsm.ApplyTable(t))
}

// decodeTable reads a table from the body and validates it as a whole, so a plan reports what
// an apply would refuse.
func decodeTable(w http.ResponseWriter, r *http.Request) (fsm.Table, error) {
	var t fsm.Table
	if err := decodeBody(w, r, largeBodyLimit, &t, false); err != nil {
		return fsm.Table{}, err
	}
	fsm.NormalizeTable(&t)
	if err := fsm.ValidateTable(&t); err != nil {
		return fsm.Table{}, err
	}
	return t, nil
}

// replace applies c, which replaces the table with t, and answers with the diff.
func (s *Server) replace(w http.ResponseWriter, r *http.Request, t fsm.Table, c fsm.Command) error {
	base, err := s.viewAs(w, r, true)
	if err != nil {
		return err
	}
	diff := nonNil(fsm.Diff(base.Table(), t))
	index, err := s.apply(w, r, c)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, TableDiff{BaseIndex: base.Index(), Index: index, Diff: diff})
	return nil
}

func nonNil(d []fsm.Difference) []fsm.Difference {
	if d == nil {
		return []fsm.Difference{}
	}
	return d
}

// saveSnapshot streams the whole state as a snapshot file. It is leader-verified unless ?stale
// is given: a stale snapshot of this node is what is left to save when quorum is lost.
func (s *Server) saveSnapshot(w http.ResponseWriter, r *http.Request) error {
	stale, err := queryFlag(r, "stale")
	if err != nil {
		return err
	}
	st, err := s.viewAs(w, r, !stale)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="troop-%d.snap"`, st.Index()))
	if _, err := st.WriteTo(w); err != nil {
		// The status is sent: abort the response so that the client sees a broken transfer
		// rather than a clean end of a truncated snapshot.
		s.log.Warn("snapshot not sent", "op", "snapshot_save", "index", st.Index(), "err", err)
		panic(http.ErrAbortHandler)
	}
	return nil
}

// restoreSnapshot replaces the whole state (table and health) with a snapshot file's, in one
// entry, and answers with the table's diff.
func (s *Server) restoreSnapshot(w http.ResponseWriter, r *http.Request) error {
	body, err := readBody(w, r, largeBodyLimit)
	if err != nil {
		return err
	}
	snap, err := fsm.ReadSnapshot(bytes.NewReader(body))
	if err != nil {
		return jsonError(body, reflect.TypeFor[fsm.Snapshot](), err)
	}
	t := snap.Table
	fsm.NormalizeTable(&t)
	if err := fsm.ValidateTable(&t); err != nil {
		return fmt.Errorf("snapshot at index %d: %w", snap.Index, err)
	}
	return s.replace(w, r, t, fsm.Restore(*snap))
}
