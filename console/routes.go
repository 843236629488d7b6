package console

// The route tables. Each group of pages keeps its list beside its
// handlers (pages_*.go); this file only says who may open them.

// publicRoutes need no session: the login pages and the forgotten password.
var publicRoutes = concat(
	[]route{
		{"GET /login", (*Server).loginPage},
		{"POST /login", (*Server).login},
	},
	accountPublicRoutes,
)

// enterpriseRoutes need an enterprise console session.
var enterpriseRoutes = concat(
	[]route{{"POST /logout", (*Server).logout}},
	sendRoutes,
	recordRoutes,
	bookRoutes,
	accountRoutes,
	receiptRoutes,
	optOutRoutes,
)

// opsPublicRoutes is the account manager's login.
var opsPublicRoutes = []route{
	{"GET /ops/login", (*Server).opsLoginPage},
	{"POST /ops/login", (*Server).opsLogin},
}

// opsRoutes need an operator session.
var opsRoutes = concat(
	[]route{{"POST /ops/logout", (*Server).opsLogout}},
	deskRoutes,
)

func concat(lists ...[]route) []route {
	var all []route
	for _, l := range lists {
		all = append(all, l...)
	}
	return all
}
