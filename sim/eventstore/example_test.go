package eventstore_test

import (
	"fmt"
	"net/http"
	"os"

	"github.com/dcagent/dcagent/agent/connecthome/wire"
	"github.com/dcagent/dcagent/agent/event"
	"github.com/dcagent/dcagent/sim/eventstore"
)

// The backend mounts the store's handler at /v1/events/ on its mutual-TLS
// server, and the demo watches events arrive.
func Example() {
	dir, _ := os.MkdirTemp("", "events")
	defer os.RemoveAll(dir)
	store, err := eventstore.Open(dir)
	if err != nil {
		panic(err)
	}
	defer store.Close()

	mux := http.NewServeMux()
	mux.Handle(wire.PathPrefix, store.Handler(eventstore.PeerCN)) // no StripPrefix

	arrivals, stop := store.Subscribe(256)
	defer stop()

	// What an upload does, without the network:
	e := &event.Event{ID: event.NewID(), Type: event.TypeAlert, Severity: event.SeverityError,
		Created: event.New(event.TypeAlert, 0, nil).Created, SystemID: "SYS-1",
		Payload: map[string]any{"message": "fan 2 stopped"}}
	data, _ := event.Marshal(e)
	store.Store([]eventstore.Incoming{{Data: data, SystemID: "SYS-1", Channel: eventstore.ChannelHTTPS}})

	r := <-arrivals
	ev, _ := r.Event()
	fmt.Println(r.SystemID, r.Type, r.Severity, r.Channel, ev.Payload["message"])
	// Output: SYS-1 alert 4 https fan 2 stopped
}
