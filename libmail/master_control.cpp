// Encoding of master's control replies.
#include "libmail/master_control.hpp"

#include <charconv>

#include <fmt/format.h>

namespace facteur::master_control {
namespace {

template <typename Number>
bool parse_number(std::string_view text, Number& out) {
    auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), out);
    return error == std::errc() && end == text.data() + text.size();
}

}  // namespace

ipc::Frame encode_status(const std::vector<ProcessStatus>& rows) {
    ipc::Frame frame = ipc::ok_reply();
    // Rows are groups of attributes, each group starting with `service`.
    for (const ProcessStatus& row : rows) {
        frame.add("service", row.service);
        frame.add("pid", std::to_string(row.pid));
        frame.add("state", row.state);
        frame.add("uptime", std::to_string(row.uptime_seconds));
        frame.add("restarts", std::to_string(row.restarts));
    }
    return frame;
}

Result<std::vector<ProcessStatus>> decode_status(const ipc::Frame& reply) {
    if (Status status = ipc::reply_status(reply, "master"); !status) return make_error(status.error());
    std::vector<ProcessStatus> rows;
    for (const auto& [name, value] : reply.attributes) {
        if (name == "service") {
            rows.push_back({value, 0, "", 0, 0});
            continue;
        }
        if (rows.empty()) continue;
        ProcessStatus& row = rows.back();
        bool ok = true;
        if (name == "pid") ok = parse_number(value, row.pid);
        else if (name == "state") row.state = value;
        else if (name == "uptime") ok = parse_number(value, row.uptime_seconds);
        else if (name == "restarts") ok = parse_number(value, row.restarts);
        if (!ok) return make_error(fmt::format("malformed {} in status reply", name));
    }
    return rows;
}

Result<ipc::Frame> call(const std::string& socket_path, std::string_view command) {
    auto client = ipc::Client::connect(socket_path);
    if (!client) return make_error(client.error());
    ipc::Frame request;
    request.add("command", std::string(command));
    return client->call(request);
}

}  // namespace facteur::master_control
