package probe

import (
	"context"
	"time"
)

// noneChecker is the check of a service that is not checked: every real server is healthy
// (ldirectord's checktype = on). Admin state still takes servers out.
type noneChecker struct{}

// Check implements Checker: always healthy, reason "no check".
func (noneChecker) Check(context.Context, Target) Result {
	return Result{Healthy: true, Reason: "no check", Duration: time.Duration(0)}
}
