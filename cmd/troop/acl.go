package main

import (
	"context"
	"flag"
	"fmt"
	"text/tabwriter"

	"github.com/troop-lb/troop/fsm"
)

var aclVerbs = []verb{
	{name: "acl token create", maxArgs: 0, json: true, flags: aclTokenCreateFlags,
		synopsis: "Create an ACL token (-name N -scope read|operator|admin) and print its secret, shown only this once"},
	{name: "acl token list", maxArgs: 0, json: true, flags: noFlags(aclTokenList),
		synopsis: "List the ACL tokens: accessors, names and scopes (never secrets)"},
	{name: "acl token delete", args: "ACCESSOR", minArgs: 1, maxArgs: 1, flags: noFlags(aclTokenDelete),
		synopsis: "Delete (revoke) an ACL token"},
}

func aclTokenCreateFlags(fs *flag.FlagSet) action {
	name := fs.String("name", "", "the token's `name` (1-64 letters, digits, . _ @ -); its writes are by token:NAME")
	scope := fs.String("scope", "", "read, operator or admin")
	return func(ctx context.Context, c *call) error {
		if *name == "" || *scope == "" {
			return usageErrorf("-name and -scope are required")
		}
		nt, err := c.client.CreateToken(ctx, *name, fsm.Scope(*scope))
		if err != nil {
			return err
		}
		if c.json {
			return printJSON(c.stdout, nt)
		}
		fmt.Fprintf(c.stdout, "AccessorID: %s\nName:       %s\nScope:      %s\nSecretID:   %s\n\nThe secret is shown only this once; the pool keeps only its hash.\n", nt.Accessor, nt.Name, nt.Scope, nt.Secret)
		return nil
	}
}

func aclTokenList(ctx context.Context, c *call) error {
	tokens, err := c.client.Tokens(ctx)
	if err != nil {
		return err
	}
	if c.json {
		return printJSON(c.stdout, tokens)
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "ACCESSOR\tNAME\tSCOPE")
	for _, t := range tokens {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", t.Accessor, t.Name, t.Scope)
	}
	return tw.Flush()
}

func aclTokenDelete(ctx context.Context, c *call) error {
	res, err := c.client.DeleteToken(ctx, c.args[0])
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "Token %s deleted (index %d)\n", c.args[0], res.Index)
	return nil
}
