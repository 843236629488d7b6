package cluster

// Share is this node's part of a rate shared by the cluster (an
// enterprise's TPS): total divided by the live members, at least one. It
// follows the member view; callers re-read it after a signal from
// Subscribe, which is how the rate rebalances when a node joins or leaves.
// During a change the sum of the nodes' shares may briefly differ from
// total, as each node sees the change at its own moment.
func (n *Node) Share(total float64) float64 {
	n.mu.Lock()
	live := len(n.members)
	n.mu.Unlock()
	return total / float64(max(live, 1))
}
