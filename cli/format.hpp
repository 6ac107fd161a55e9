// Human-readable output for the CLI: uptimes, sizes, aligned tables.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace facteur::cli {

// 42s, 5m12s, 2h03m, 3d04h.
std::string format_uptime(int64_t seconds);
// Quotas: 0 → "unlimited", else the largest exact unit: 1G, 500M, 64K, 1234.
std::string format_quota(uint64_t bytes);
// Columns separated by two spaces, each as wide as its widest cell; the
// last column is not padded.
std::string format_table(const std::vector<std::vector<std::string>>& rows);

}  // namespace facteur::cli
