package contract

// Errors on the wire. Every error a coordinator returns has a gRPC code;
// where one code covers several kinds (NotFound: a node, a session, a
// breaker; FailedPrecondition: a version, a non-empty node, an ephemeral
// parent), the status also carries a google.rpc.ErrorInfo detail in
// ErrorDomain whose reason names the kind. Clients tell kinds apart by the
// reason, never by the message's words, which are for people. A failed op
// of a Multi carries the same reason in its OpError.
const ErrorDomain = "colony"

// The reasons, one per kind of error.
const (
	ReasonNoNode          = "NO_NODE"           // NotFound: the znode (or a create's parent) does not exist
	ReasonSessionNotFound = "SESSION_NOT_FOUND" // NotFound: the session is unknown, closed or expired
	ReasonNotFound        = "NOT_FOUND"         // NotFound: a breaker, policy or callee is unknown
	ReasonNodeExists      = "NODE_EXISTS"       // AlreadyExists
	ReasonBadVersion      = "BAD_VERSION"       // FailedPrecondition: a version check failed
	ReasonNotEmpty        = "NOT_EMPTY"         // FailedPrecondition: delete of a node with children
	ReasonEphemeralParent = "EPHEMERAL_PARENT"  // FailedPrecondition: create under an ephemeral node
	ReasonInvalidArgument = "INVALID_ARGUMENT"  // InvalidArgument: the message names the field and the limit
	ReasonAborted         = "ABORTED"           // Aborted: an op of a Multi not applied because another failed
	ReasonBadSnapshot     = "BAD_SNAPSHOT"      // DataLoss: a snapshot that cannot be read or is inconsistent
	ReasonSessionNotOwned = "SESSION_NOT_OWNED" // PermissionDenied: the session belongs to another identity
)
