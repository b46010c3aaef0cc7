package gobreakerstore_test

import (
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/colonymesh/colony/adapters/gobreakerstore"
	"github.com/colonymesh/colony/coordinator/client"
)

// Point an existing gobreaker DistributedCircuitBreaker at Colony: every
// process that builds a breaker with the same name through a Store on the same
// coordinator shares one breaker. (Not run as a test: it needs a coordinator
// on 127.0.0.1:7400.)
func ExampleNew() {
	c, err := client.New(client.Config{Endpoints: []string{"127.0.0.1:7400", "127.0.0.1:7410", "127.0.0.1:7420"}})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	store, err := gobreakerstore.New(c, gobreakerstore.Config{
		SessionName: "orders-7f9c/gobreaker", // shown by `colony session ls`
	})
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close() // releases the locks of this process at once

	cb, err := gobreaker.NewDistributedCircuitBreaker[[]byte](store, gobreaker.Settings{
		Name:        "payments",
		MaxRequests: 3,
		Timeout:     30 * time.Second,
		ReadyToTrip: func(counts gobreaker.Counts) bool { return counts.ConsecutiveFailures > 5 },
	})
	if err != nil {
		log.Fatal(err)
	}

	body, err := cb.Execute(func() ([]byte, error) {
		resp, err := http.Get("http://payments.internal/v1/health")
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		if resp.StatusCode >= 500 {
			return nil, fmt.Errorf("payments: %s", resp.Status)
		}
		return io.ReadAll(resp.Body)
	})
	switch {
	case errors.Is(err, gobreaker.ErrOpenState):
		fmt.Println("payments is failing for the whole fleet; not calling it")
	case err != nil:
		fmt.Println("call failed:", err)
	default:
		fmt.Printf("payments says %s\n", body)
	}
}
