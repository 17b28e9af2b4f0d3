package inventory

import (
	"fmt"
	"time"
)

// Human formats a duration the way kubectl's AGE column does, in one unit, rounded down: "40s", "5m",
// "2h", "3d", "41d", "2y". Durations under two days are shown in hours, under two years in days, so that
// "in 36h" is not read as "in 1d". Negative durations are formatted by their absolute value.
func Human(d time.Duration) string {
	if d < 0 {
		d = -d
	}
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int64(d/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int64(d/time.Minute))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int64(d/time.Hour))
	case d < 2*365*24*time.Hour:
		return fmt.Sprintf("%dd", int64(d/(24*time.Hour)))
	default:
		return fmt.Sprintf("%dy", int64(d/(365*24*time.Hour)))
	}
}

// Relative says when t is from now: "in 3d", "2h ago", or "now" within a second either side.
func Relative(t, now time.Time) string {
	d := t.Sub(now)
	switch {
	case d > -time.Second && d < time.Second:
		return "now"
	case d > 0:
		return "in " + Human(d)
	default:
		return Human(d) + " ago"
	}
}
