package xds_test

import (
	"fmt"

	"github.com/colonymesh/colony/breaker"
	"github.com/colonymesh/colony/xds"
)

func ExampleTranslate() {
	st := xds.State{
		Caller:   "checkout",
		Instance: "checkout-1",
		Callees: []xds.Callee{{
			Name:      "payments",
			Protocol:  xds.GRPC,
			Endpoints: []xds.Endpoint{{Instance: "payments-1", Address: "10.0.0.1", Port: 50051, Zone: "a"}},
			Breaker:   &breaker.PairRecord{Record: breaker.Record{State: breaker.Open, Generation: 7}},
		}},
	}
	res, err := xds.Translate(xds.Config{}, st)
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, l := range res.EnvoyListeners {
		fmt.Println("Envoy listener:", l.GetName())
	}
	for _, l := range res.ProxylessListeners {
		fmt.Println("proxyless listener:", l.GetName())
	}
	for _, rc := range res.Routes {
		for _, vh := range rc.GetVirtualHosts() {
			r := vh.GetRoutes()[0]
			fmt.Printf("routes %s, host %s: %q, overrides %d filter\n", rc.GetName(), vh.GetName(), r.GetName(), len(r.GetTypedPerFilterConfig()))
		}
	}
	for _, c := range res.Clusters {
		fmt.Println("cluster:", c.GetName())
	}
	// Output:
	// Envoy listener: colony:egress
	// proxyless listener: payments
	// routes colony:egress, host payments: "checkout->payments; state=OPEN; generation=7", overrides 1 filter
	// routes payments, host payments: "checkout->payments; state=OPEN; generation=7", overrides 1 filter
	// cluster: payments
}
