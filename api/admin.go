package api

// adminRoutes registers the operator's and enterprises' administration
// endpoints (enterprises, users, whitelist, scope, packages).
func (s *Server) adminRoutes() {}
