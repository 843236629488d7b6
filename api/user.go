package api

// userRoutes registers the enterprises' user API under /v1.
func (s *Server) userRoutes() {}
