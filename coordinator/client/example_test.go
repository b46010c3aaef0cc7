package client_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"time"

	"github.com/colonymesh/colony/coordinator/client"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

// Create a znode, read it, update it with compare-and-set, and watch it.
// (Not run as a test: it needs a coordinator on 127.0.0.1:7400.)
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	c, err := client.New(client.Config{Endpoints: []string{"127.0.0.1:7400", "127.0.0.1:7410", "127.0.0.1:7420"}})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	path, _, err := c.Create(ctx, "/colony/example", []byte("v1"))
	if errors.Is(err, client.ErrNodeExists) {
		err = nil // from an earlier run
	} else {
		fmt.Println("created", path)
	}
	if err != nil {
		log.Fatal(err)
	}

	// Read, remembering the zxid the read reflects, and watch from there:
	// the watch then sees every change after the read, none twice.
	var h *colonyv1.ResponseHeader
	data, stat, err := c.Get(ctx, "/colony/example", client.WithHeader(&h))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("read %q at version %d\n", data, stat.GetVersion())
	w, err := c.Watch(ctx, "/colony/example", colonyv1.WatchKind_WATCH_KIND_DATA, client.AfterZxid(h.GetZxid()))
	if err != nil {
		log.Fatal(err)
	}
	defer w.Close()

	// Compare-and-set: fails with ErrBadVersion if someone wrote in between.
	if _, err := c.Set(ctx, "/colony/example", []byte("v2"), stat.GetVersion()); errors.Is(err, client.ErrBadVersion) {
		fmt.Println("lost the race:", err)
	} else if err != nil {
		log.Fatal(err)
	}

	for {
		ev, err := w.Next(ctx)
		if err == io.EOF { // a DATA watch fires once
			break
		}
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("%s %s at zxid %d\n", ev.GetType(), ev.GetPath(), ev.GetZxid())
	}
}

// Own an ephemeral znode for as long as this process keeps its session.
func ExampleClient_OpenSession() {
	ctx := context.Background()
	c, err := client.New(client.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	s, err := c.OpenSession(ctx, 10*time.Second, "example")
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close(ctx)
	if _, _, err := c.Create(ctx, "/colony/services/example/me", []byte("10.0.0.7:8080"), client.Ephemeral(s.ID())); err != nil {
		log.Fatal(err)
	}
	select {
	case <-s.Done(): // lost: the ephemeral is gone; stop acting as registered
		log.Print(s.Err())
	case <-ctx.Done():
	}
}
