package progress

import "time"

// SetNow sets the clock of m (for the external tests).
func SetNow(m *Manager, now func() time.Time) { m.now = now }

// SeedFor is seedFor (for the external tests).
const SeedFor = seedFor

// Tasks is the number of tasks m keeps (for the external tests).
func Tasks(m *Manager) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.tasks)
}
