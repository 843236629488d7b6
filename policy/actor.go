package policy

// Actor is who performs an administrative action. The operator (the account
// managers) may do everything; an enterprise actor only touches its own
// enterprise, and only an admin changes it.
type Actor struct {
	Operator   bool
	Enterprise string // enterprise actors: their group code
	Admin      bool   // enterprise admin
	Name       string // for the audit fields: operator login, or the user's system_id
}

// OperatorActor returns the operator actor with the given audit name.
func OperatorActor(name string) Actor { return Actor{Operator: true, Name: name} }

// ActorFor returns the actor of an authenticated user.
func ActorFor(u *User) Actor {
	return Actor{Enterprise: u.Enterprise, Admin: u.Role == RoleAdmin, Name: u.SystemID}
}

func (a Actor) member(code string) bool { return a.Operator || code != "" && a.Enterprise == code }
func (a Actor) admin(code string) bool {
	return a.Operator || a.Admin && code != "" && a.Enterprise == code
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
