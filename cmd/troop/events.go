package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"

	"github.com/troop-lb/troop/api"
)

var eventVerbs = []verb{
	{name: "events", maxArgs: 0, json: true, flags: eventsFlags,
		synopsis: "Print the agent's recent events (health transitions with their reasons, leadership); -f follows them"},
}

func eventsFlags(fs *flag.FlagSet) action {
	follow := fs.Bool("f", false, "follow: keep printing events as they happen, until interrupted")
	since := fs.Uint64("since", 0, "print only events after this sequence `number`")
	return func(ctx context.Context, c *call) error {
		enc := json.NewEncoder(c.stdout)
		var werr error
		err := c.client.Events(ctx, *since, *follow, func(ev api.Event) {
			if werr != nil {
				return
			}
			if c.json {
				werr = enc.Encode(ev)
			} else {
				_, werr = fmt.Fprintln(c.stdout, ev)
			}
		})
		if err == nil {
			err = werr
		}
		return err
	}
}
