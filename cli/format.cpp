// Human-readable output for the CLI: uptimes, sizes, aligned tables.
#include "cli/format.hpp"

#include <algorithm>

#include <fmt/format.h>

namespace facteur::cli {

std::string format_uptime(int64_t seconds) {
    if (seconds < 0) seconds = 0;
    constexpr int64_t minute = 60, hour = 60 * minute, day = 24 * hour;
    if (seconds < minute) return fmt::format("{}s", seconds);
    if (seconds < hour) return fmt::format("{}m{:02}s", seconds / minute, seconds % minute);
    if (seconds < day) return fmt::format("{}h{:02}m", seconds / hour, seconds % hour / minute);
    return fmt::format("{}d{:02}h", seconds / day, seconds % day / hour);
}

std::string format_quota(uint64_t bytes) {
    if (bytes == 0) return "unlimited";
    // Same suffixes (powers of 1024) as config::parse_size reads back.
    static constexpr struct {
        uint64_t factor;
        char suffix;
    } units[] = {{uint64_t{1} << 30, 'G'}, {uint64_t{1} << 20, 'M'}, {uint64_t{1} << 10, 'K'}};
    for (const auto& unit : units)
        if (bytes % unit.factor == 0) return fmt::format("{}{}", bytes / unit.factor, unit.suffix);
    return std::to_string(bytes);
}

std::string format_table(const std::vector<std::vector<std::string>>& rows) {
    std::vector<size_t> widths;
    for (const auto& row : rows) {
        if (widths.size() < row.size()) widths.resize(row.size(), 0);
        for (size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], row[i].size());
    }
    std::string out;
    for (const auto& row : rows) {
        for (size_t i = 0; i < row.size(); ++i) {
            out += row[i];
            if (i + 1 < row.size()) out.append(widths[i] - row[i].size() + 2, ' ');
        }
        out += '\n';
    }
    return out;
}

}  // namespace facteur::cli
