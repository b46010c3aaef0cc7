package watchhub_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/colonymesh/colony/internal/watchhub"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

func Example() {
	h := watchhub.New(watchhub.Config{})
	defer h.Close()

	// A watcher resumes after the last zxid it saw (here: from the start).
	s, err := h.Subscribe(watchhub.Filter{
		Path:      "/colony/breakers",
		Kind:      colonyv1.WatchKind_WATCH_KIND_PERSISTENT,
		Recursive: true,
	}, 0)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer s.Close()

	// The FSM publishes the events of each applied entry.
	h.Publish(7, []*colonyv1.Event{{
		Type: colonyv1.EventType_EVENT_TYPE_DATA_CHANGED,
		Path: "/colony/breakers/orders/payments",
		Zxid: 7,
		Data: []byte("OPEN"),
	}})

	events, err := s.Next(context.Background())
	switch {
	case errors.Is(err, watchhub.ErrResync):
		fmt.Println("re-read the state, then watch again:", err)
	case err != nil:
		fmt.Println(err)
	}
	for _, ev := range events {
		fmt.Println(ev.GetZxid(), ev.GetType(), ev.GetPath(), string(ev.GetData()))
	}
	// Output: 7 EVENT_TYPE_DATA_CHANGED /colony/breakers/orders/payments OPEN
}
