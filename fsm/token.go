package fsm

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"maps"
	"regexp"
	"slices"
	"unicode/utf8"
)

// Scope is what an ACL token may do. Each scope includes the ones below it: read < operator <
// admin.
type Scope string

// Scopes of ACL tokens.
const (
	// ScopeRead reads the table, status, events and members, and plans a table.
	ScopeRead Scope = "read"
	// ScopeOperator also changes services, real servers, hosts and weights, applies a table and
	// transfers leadership.
	ScopeOperator Scope = "operator"
	// ScopeAdmin also manages tokens, saves and restores snapshots and removes Raft peers.
	ScopeAdmin Scope = "admin"
)

// Scopes lists every scope, weakest first.
var Scopes = []Scope{ScopeRead, ScopeOperator, ScopeAdmin}

// Allows reports whether a token of scope s may do what needs scope need. An unknown scope
// allows nothing.
func (s Scope) Allows(need Scope) bool {
	have, want := slices.Index(Scopes, s), slices.Index(Scopes, need)
	return have >= 0 && want >= 0 && have >= want
}

// Token is an ACL token as the replicated table keeps it: never its secret, only the secret's
// SHA-256 (HashSecret). The accessor names the token in listings and deletions and grants
// nothing by itself.
type Token struct {
	Accessor string `json:"accessor"`
	Name     string `json:"name"`
	Scope    Scope  `json:"scope"`
	// Hash is the lowercase hex SHA-256 of the secret.
	Hash string `json:"hash"`
}

// HashSecret returns what a Token keeps of a secret: its SHA-256 in lowercase hex.
func HashSecret(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// TokenNameMax is the longest token name.
const TokenNameMax = 64

var (
	tokenNameRE = regexp.MustCompile(`^[A-Za-z0-9._@-]+$`)
	accessorRE  = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
	hashRE      = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

// ValidateToken checks a token's fields: a UUID-shaped lowercase accessor, a name of 1 to 64
// letters, digits and ". _ @ -", a known scope and a SHA-256 hash in lowercase hex.
func ValidateToken(tk *Token) error {
	if !accessorRE.MatchString(tk.Accessor) {
		return invalid("token accessor", tk.Accessor, "must be a lowercase UUID (8-4-4-4-12 hex digits)")
	}
	if n := utf8.RuneCountInString(tk.Name); n < 1 || n > TokenNameMax || !tokenNameRE.MatchString(tk.Name) {
		return invalid("token name", tk.Name, "must be 1 to %d letters, digits, '.', '_', '@' or '-'", TokenNameMax)
	}
	if !slices.Contains(Scopes, tk.Scope) {
		return invalid("token scope", string(tk.Scope), "must be one of %s", joinOf(Scopes))
	}
	if !hashRE.MatchString(tk.Hash) {
		// The value is not quoted: it may be a secret sent by mistake.
		return invalid("token hash", "", "must be a SHA-256 in lowercase hex (64 digits)")
	}
	return nil
}

// Tokens lists the ACL tokens, by accessor.
func (st *State) Tokens() []Token {
	out := make([]Token, 0, len(st.tokens))
	for _, a := range slices.Sorted(maps.Keys(st.tokens)) {
		out = append(out, *st.tokens[a])
	}
	return out
}

// TokenByHash returns the token whose secret hashes to hash (HashSecret). It compares with every
// token in constant time, so the time taken says nothing about how close a guess came.
func (st *State) TokenByHash(hash string) (Token, bool) {
	var found *Token
	for _, tk := range st.tokens {
		if subtle.ConstantTimeCompare([]byte(tk.Hash), []byte(hash)) == 1 {
			found = tk
		}
	}
	if found == nil {
		return Token{}, false
	}
	return *found, true
}

// prepareToken validates upsert_token and delete_token against the state. A token name is
// unique: it is the actor of the token's writes.
func (st *State) prepareToken(c *Command) (*change, error) {
	tokens := maps.Clone(st.tokens)
	if tokens == nil {
		tokens = map[string]*Token{}
	}
	switch c.Op {
	case OpUpsertToken:
		if c.Token == nil {
			return nil, invalid("token", "", "is required")
		}
		tk := *c.Token
		if err := ValidateToken(&tk); err != nil {
			return nil, err
		}
		for _, other := range st.tokens {
			if other.Accessor != tk.Accessor && other.Name == tk.Name {
				return nil, &FieldError{Field: "token name", Value: tk.Name, Reason: "is taken by token " + other.Accessor, Kind: ErrConflict}
			}
			if other.Accessor != tk.Accessor && other.Hash == tk.Hash {
				return nil, &FieldError{Field: "token hash", Reason: "is another token's", Kind: ErrConflict}
			}
		}
		tokens[tk.Accessor] = &tk
	default: // OpDeleteToken
		if _, ok := st.tokens[c.Accessor]; !ok {
			return nil, &FieldError{Field: "token", Value: c.Accessor, Reason: "does not exist", Kind: ErrNotFound}
		}
		delete(tokens, c.Accessor)
	}
	return &change{tokens: tokens}, nil
}
