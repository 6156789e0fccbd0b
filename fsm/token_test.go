//go:build !troop_protocol1

package fsm

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"
)

const (
	accessor1 = "0f8fad5b-d9cb-469f-a165-70867728950e"
	accessor2 = "7c9e6679-7425-40de-944b-e07fc1f90ae7"
)

func TestScopeAllows(t *testing.T) {
	for _, c := range []struct {
		have, need Scope
		ok         bool
	}{
		{ScopeRead, ScopeRead, true}, {ScopeRead, ScopeOperator, false}, {ScopeRead, ScopeAdmin, false},
		{ScopeOperator, ScopeRead, true}, {ScopeOperator, ScopeOperator, true}, {ScopeOperator, ScopeAdmin, false},
		{ScopeAdmin, ScopeRead, true}, {ScopeAdmin, ScopeAdmin, true},
		{"root", ScopeRead, false}, {"", ScopeRead, false}, {ScopeAdmin, "root", false},
	} {
		if got := c.have.Allows(c.need); got != c.ok {
			t.Errorf("%q.Allows(%q) = %v, want %v", c.have, c.need, got, c.ok)
		}
	}
}

func TestTokens(t *testing.T) {
	a := &applier{t: t, f: testFSM(t)}
	secret := "s3cret-not-in-any-state"
	tk := Token{Accessor: accessor1, Name: "ci", Scope: ScopeOperator, Hash: HashSecret(secret)}
	res := a.mustApply(UpsertToken(tk))
	if len(res.Changed) != 0 {
		t.Errorf("a token changed services %v", res.Changed)
	}
	st := a.f.View()
	if got, ok := st.TokenByHash(HashSecret(secret)); !ok || got != tk {
		t.Errorf("TokenByHash = %+v, %v; want %+v", got, ok, tk)
	}
	if _, ok := st.TokenByHash(HashSecret("guess")); ok {
		t.Error("a wrong secret found a token")
	}
	// The snapshot keeps the hash, never the secret, and restores to the same tokens.
	var buf bytes.Buffer
	if _, err := st.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(buf.String(), secret) || !strings.Contains(buf.String(), tk.Hash) {
		t.Errorf("snapshot %s: want the hash and not the secret", buf.String())
	}
	g := testFSM(t)
	if err := g.Restore(&buf); err != nil {
		t.Fatal(err)
	}
	if got := g.View().Tokens(); !slices.Equal(got, []Token{tk}) {
		t.Errorf("restored tokens %+v, want %+v", got, []Token{tk})
	}

	for _, bad := range []struct {
		c    Command
		kind error
	}{
		{UpsertToken(Token{Accessor: accessor2, Name: "", Scope: ScopeRead, Hash: HashSecret("x")}), ErrInvalid},
		{UpsertToken(Token{Accessor: accessor2, Name: strings.Repeat("n", 65), Scope: ScopeRead, Hash: HashSecret("x")}), ErrInvalid},
		{UpsertToken(Token{Accessor: accessor2, Name: "has space", Scope: ScopeRead, Hash: HashSecret("x")}), ErrInvalid},
		{UpsertToken(Token{Accessor: accessor2, Name: "x", Scope: "root", Hash: HashSecret("x")}), ErrInvalid},
		{UpsertToken(Token{Accessor: "nope", Name: "x", Scope: ScopeRead, Hash: HashSecret("x")}), ErrInvalid},
		{UpsertToken(Token{Accessor: accessor2, Name: "x", Scope: ScopeRead, Hash: secret}), ErrInvalid},
		{UpsertToken(Token{Accessor: accessor2, Name: "ci", Scope: ScopeRead, Hash: HashSecret("x")}), ErrConflict},
		{DeleteToken(accessor2), ErrNotFound},
		{Command{Op: OpUpsertToken}, ErrInvalid},
	} {
		if r := a.apply(bad.c); !errors.Is(r.Err, bad.kind) {
			t.Errorf("%s %+v: err = %v, want %v", bad.c.Op, bad.c.Token, r.Err, bad.kind)
		}
	}
	// A name of exactly 64 characters is fine.
	a.mustApply(UpsertToken(Token{Accessor: accessor2, Name: strings.Repeat("n", 64), Scope: ScopeAdmin, Hash: HashSecret("other")}))
	if n := len(a.f.View().Tokens()); n != 2 {
		t.Errorf("%d tokens, want 2", n)
	}
	// The frozen view taken earlier still has one.
	if n := len(st.Tokens()); n != 1 {
		t.Errorf("frozen view has %d tokens, want 1", n)
	}
	a.mustApply(DeleteToken(accessor1))
	if _, ok := a.f.View().TokenByHash(HashSecret(secret)); ok {
		t.Error("deleted token still found")
	}
}

// A restore replaces the table but leaves the tokens: an old file neither revokes nor revives one.
func TestRestoreKeepsTokens(t *testing.T) {
	a := &applier{t: t, f: testFSM(t)}
	a.mustApply(UpsertService(web()))
	old := a.f.View().Snapshot()
	old.Tokens = []Token{{Accessor: accessor2, Name: "old", Scope: ScopeAdmin, Hash: HashSecret("old")}}
	tk := Token{Accessor: accessor1, Name: "ci", Scope: ScopeRead, Hash: HashSecret("new")}
	a.mustApply(UpsertToken(tk))
	c := Restore(old)
	a.mustApply(c)
	if got := a.f.View().Tokens(); !slices.Equal(got, []Token{tk}) {
		t.Errorf("tokens after restore %+v, want %+v", got, []Token{tk})
	}
	// Prepare drops them from the entry a node proposes.
	c = Restore(old)
	if err := a.f.Prepare(&c); err != nil || c.State.Tokens != nil {
		t.Errorf("prepared restore: err %v, tokens %+v; want none", err, c.State.Tokens)
	}
}
