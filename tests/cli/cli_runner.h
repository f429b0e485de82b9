#pragma once
// Runs the mxlens-cli binary (path in $MXLENS_CLI, set by tests/CMakeLists.txt) as a user
// would, and returns its exit code and both output streams.
#include <QJsonDocument>
#include <QJsonObject>
#include <QProcess>
#include <QString>
#include <QStringList>
#include <filesystem>

namespace mxlens::test {

struct CliRun {
  int exit_code = -1;  // -1: timed out or crashed
  QString out;
  QString err;
};

inline CliRun run_cli(const QStringList& args, int timeout_ms) {
  QProcess p;
  p.start(QString::fromLocal8Bit(qgetenv("MXLENS_CLI")), args);
  CliRun r;
  if (!p.waitForFinished(timeout_ms)) {
    p.kill();
    p.waitForFinished();
    r.err = "timed out";
    return r;
  }
  r.exit_code = p.exitStatus() == QProcess::NormalExit ? p.exitCode() : -1;
  r.out = QString::fromUtf8(p.readAllStandardOutput());
  r.err = QString::fromUtf8(p.readAllStandardError());
  return r;
}

// The same with stdout and stderr as raw bytes (binary output compared byte for byte);
// exit_code -1 on a timeout (err "timeout"), -2 on a crash.
struct CliBytesRun {
  int exit_code = -1;
  QByteArray out, err;
};

inline CliBytesRun run_cli_bytes(const QStringList& args, int timeout_ms) {
  QProcess p;
  p.start(qEnvironmentVariable("MXLENS_CLI"), args);
  if (!p.waitForFinished(timeout_ms)) {
    p.kill();
    return {-1, {}, "timeout"};
  }
  return {p.exitStatus() == QProcess::NormalExit ? p.exitCode() : -2, p.readAllStandardOutput(),
          p.readAllStandardError()};
}

// The run's stdout as one JSON object (empty, with a warning showing the output, when it is
// not JSON).
inline QJsonObject parse_json(const CliRun& r) {
  QJsonParseError perr;
  const QJsonObject j = QJsonDocument::fromJson(r.out.toUtf8(), &perr).object();
  if (perr.error != QJsonParseError::NoError) qWarning("not JSON: %s", qPrintable(r.out));
  return j;
}

inline QString qstr(const std::filesystem::path& p) {
  return QString::fromStdString(p.string());
}

}  // namespace mxlens::test
