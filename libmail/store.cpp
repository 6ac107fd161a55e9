// Helpers the Maildir and mbox writers share.
#include "libmail/store.hpp"

#include <sys/stat.h>

#include <cerrno>

#include <fmt/format.h>

#include "libmail/system.hpp"

namespace facteur::store {

Status make_directories(const std::string& path, mode_t mode) {
    if (path.empty() || path[0] != '/') return make_error(fmt::format("not an absolute path: {}", path));
    for (size_t slash = path.find('/', 1);; slash = path.find('/', slash + 1)) {
        std::string prefix = slash == std::string::npos ? path : path.substr(0, slash);
        if (!prefix.empty() && prefix.back() != '/' && mkdir(prefix.c_str(), mode) != 0 && errno != EEXIST)
            return make_error(fmt::format("cannot create {}: {}", prefix, system::errno_text(errno)));
        if (slash == std::string::npos) break;
    }
    struct stat info {};
    if (stat(path.c_str(), &info) != 0 || !S_ISDIR(info.st_mode))
        return make_error(fmt::format("{} is not a directory", path));
    return {};
}

}  // namespace facteur::store
