# Colony. `make` with no target lists the targets.
GO        ?= go
PKGS      ?= ./...
GOBIN     ?= $(shell $(GO) env GOPATH)/bin
PROTOC_GEN_GO_VERSION      := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.6.2
PROTOS    := $(shell find proto -name '*.proto')

.DEFAULT_GOAL := help

.PHONY: help
help: ## List the targets.
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-18s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: ## Build bin/colony.
	$(GO) build -o bin/colony ./cmd/colony

.PHONY: proto
proto: ## Regenerate the committed protobuf code (needs protoc: apt-get install protobuf-compiler).
	$(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
	$(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)
	PATH="$(GOBIN):$$PATH" protoc -I proto \
		--go_out=. --go_opt=module=github.com/colonymesh/colony \
		--go-grpc_out=. --go-grpc_opt=module=github.com/colonymesh/colony \
		$(PROTOS)
