package policy

import "slices"

// Actor is who performs an administrative action. The operator (the account
// managers) may do everything, or, a manager given a portfolio (Scope),
// everything within its enterprises; an enterprise actor only touches its
// own enterprise, and only an admin changes it.
type Actor struct {
	Operator bool
	// Scope is the group codes an operator actor acts for (an account
	// manager's own enterprises); nil is every enterprise, and what
	// concerns none or all of them (creating enterprises, the applications
	// to open one, the number overrides).
	Scope      []string
	Enterprise string // enterprise actors: their group code
	Admin      bool   // enterprise admin
	Name       string // for the audit fields: operator login, or the user's system_id
	// ReadOnly is an operator that may look and not change: an account
	// manager configured read_only (客服, an auditor). The admin API
	// refuses it every request but a read, before any handler runs.
	ReadOnly bool
}

// OperatorActor returns the operator actor with the given audit name.
func OperatorActor(name string) Actor { return Actor{Operator: true, Name: name} }

// ManagerActor returns the operator actor of an account manager who acts
// for the enterprises of scope only (nil or empty: every enterprise, as
// OperatorActor).
func ManagerActor(name string, scope []string) Actor {
	a := OperatorActor(name)
	if len(scope) > 0 {
		a.Scope = scope
	}
	return a
}

// ActorFor returns the actor of an authenticated user.
func ActorFor(u *User) Actor {
	return Actor{Enterprise: u.Enterprise, Admin: u.Role == RoleAdmin, Name: u.SystemID}
}

// Serves reports whether a acts as the operator for enterprise code.
func (a Actor) Serves(code string) bool {
	return a.Operator && (a.Scope == nil || code != "" && slices.Contains(a.Scope, code))
}

// Scoped reports whether a is an operator with a portfolio: the operator
// of some enterprises only.
func (a Actor) Scoped() bool { return a.Operator && a.Scope != nil }

// Everywhere reports whether a is the operator of every enterprise: what
// belongs to no single enterprise is its alone.
func (a Actor) Everywhere() bool { return a.Operator && a.Scope == nil }

func (a Actor) member(code string) bool { return a.Serves(code) || code != "" && a.Enterprise == code }
func (a Actor) admin(code string) bool {
	return a.Serves(code) || a.Admin && code != "" && a.Enterprise == code
}
func (a Actor) who() string {
	switch {
	case a.Name != "":
		return a.Name
	case a.Operator:
		return "operator"
	}
	return a.Enterprise
}
