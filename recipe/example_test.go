package recipe_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/colonymesh/colony/coordinator/client"
	"github.com/colonymesh/colony/recipe"
)

// A job that must run on one instance at a time, with its writes to the
// znode tree guarded by the lock.
func ExampleMutex() {
	ctx := context.Background()
	c, err := client.New(client.Config{Endpoints: []string{"127.0.0.1:7400"}})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	sess, err := c.OpenSession(ctx, 10*time.Second, "billing-cron")
	if err != nil {
		log.Fatal(err)
	}
	defer sess.Close(context.Background())

	m, err := recipe.NewMutex(c, sess, "billing")
	if err != nil {
		log.Fatal(err)
	}
	g, err := m.Lock(ctx)
	if err != nil {
		log.Fatal(err)
	}
	defer m.Unlock(context.Background())

	// Applied only while this process still holds the lock.
	_, err = g.Multi(ctx, client.SetOp("/billing/last-run", []byte(time.Now().String()), client.AnyVersion))
	if errors.Is(err, recipe.ErrNotHeld) {
		log.Print("lost the lock; another instance runs the job now")
	}
}

// A resource that is not in the znode tree rejects writes from holders
// that lost the lock: they carry a lower token than one it has seen.
func ExampleFence() {
	var fence recipe.Fence
	write := func(token recipe.Token, what string) {
		if err := fence.Admit(token); err != nil {
			fmt.Println("rejected:", err)
			return
		}
		fmt.Println("applied:", what)
	}
	write(41, "from the first holder")
	write(57, "from the next holder") // the first paused past its session's TTL
	write(41, "from the first holder, resumed")
	// Output:
	// applied: from the first holder
	// applied: from the next holder
	// rejected: recipe: stale fencing token: 41 is below 57, already admitted
}

// Leader election among replicas.
func ExampleElection() {
	ctx := context.Background()
	c, err := client.New(client.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	sess, err := c.OpenSession(ctx, 10*time.Second, "orders-7f9c")
	if err != nil {
		log.Fatal(err)
	}
	defer sess.Close(context.Background())

	e, err := recipe.NewElection(c, sess, "orders-primary")
	if err != nil {
		log.Fatal(err)
	}
	g, err := e.Campaign(ctx, []byte("orders-7f9c:8080"))
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("leading with token %d", g.Token())
	select {
	case <-g.Done(): // the session was lost: stop acting as leader
		log.Print(g.Err())
	case <-ctx.Done():
		_ = e.Resign(context.Background())
	}
}
