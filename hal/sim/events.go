package sim

import (
	"fmt"
	"strconv"
	"strings"
)

// EventKind is a change to the board or the enclosure.
type EventKind string

const (
	// EventFanFail stops system fan N (1-based) on the board: 0 RPM, alarm set.
	EventFanFail EventKind = "fan-fail"
	// EventOverheat makes CPU package N (0-based) climb 6 °C a step until
	// it is past its critical limit, with the critical alarm set there.
	EventOverheat EventKind = "overheat"
	// EventPSUFail takes power supply N (1-based) off line: no input or
	// output, under-voltage alarms, its fan stopped; the other supplies
	// carry the load.
	EventPSUFail EventKind = "psu-fail"
	// EventSlotFault sets enclosure slot N's (0-based) fault indicator and
	// status "critical".
	EventSlotFault EventKind = "slot-fault"
	// EventLocate lights enclosure slot N's locate indicator.
	EventLocate EventKind = "locate"
)

// eventDefaults is each kind's target when the event names none.
var eventDefaults = map[EventKind]int{
	EventFanFail: 1, EventOverheat: 0, EventPSUFail: 2, EventSlotFault: 0, EventLocate: 0,
}

// ParseEvent reads "STEP:KIND[:TARGET]", e.g. "5:fan-fail:2".
func ParseEvent(s string) (Event, error) {
	parts := strings.Split(strings.TrimSpace(s), ":")
	if len(parts) < 2 || len(parts) > 3 {
		return Event{}, fmt.Errorf("sim: event %q: want STEP:KIND[:TARGET], e.g. 5:fan-fail:2 (kinds: %s)", s, eventKinds())
	}
	step, err := strconv.Atoi(parts[0])
	if err != nil || step < 0 {
		return Event{}, fmt.Errorf("sim: event %q: step %q is not a whole number >= 0", s, parts[0])
	}
	kind := EventKind(parts[1])
	target, ok := eventDefaults[kind]
	if !ok {
		return Event{}, fmt.Errorf("sim: event %q: unknown kind %q (kinds: %s)", s, parts[1], eventKinds())
	}
	if len(parts) == 3 {
		if target, err = strconv.Atoi(parts[2]); err != nil || target < 0 {
			return Event{}, fmt.Errorf("sim: event %q: target %q is not a whole number >= 0", s, parts[2])
		}
	}
	return Event{Step: step, Kind: kind, Target: target}, nil
}

func eventKinds() string {
	return strings.Join([]string{string(EventFanFail), string(EventOverheat), string(EventPSUFail), string(EventSlotFault), string(EventLocate)}, ", ")
}

// String gives the event in the form ParseEvent reads.
func (e Event) String() string { return fmt.Sprintf("%d:%s:%d", e.Step, e.Kind, e.Target) }

// check validates an event against the hardware it acts on.
func (e Event) check(st *State) error {
	var max int
	var what string
	switch e.Kind {
	case EventFanFail:
		max, what = st.Board.Fans, "fans (1-based)"
		if e.Target < 1 || e.Target > max {
			return fmt.Errorf("sim: event %s: the board has %d %s", e, max, what)
		}
		return nil
	case EventPSUFail:
		max, what = st.Board.PSUs, "power supplies (1-based)"
		if e.Target < 1 || e.Target > max {
			return fmt.Errorf("sim: event %s: the board has %d %s", e, max, what)
		}
		return nil
	case EventOverheat:
		max, what = st.Board.CPUs, "CPU packages (0-based)"
	case EventSlotFault, EventLocate:
		max, what = st.Enclosure.Slots, "enclosure slots (0-based)"
	}
	if e.Target >= max {
		return fmt.Errorf("sim: event %s: there are %d %s", e, max, what)
	}
	return nil
}
