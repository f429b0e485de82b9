#include <QtTest>

#include "core/util/error.h"
#include "core/util/progress.h"

using namespace mxlens;

class TestError : public QObject {
  Q_OBJECT
 private slots:
  void messageNamesSourceAndProblem() {
    Error e("model/config.json", "missing field 'hidden_size'");
    QCOMPARE(QString(e.what()), QString("model/config.json: missing field 'hidden_size'"));
    QCOMPARE(QString::fromStdString(e.source()), QString("model/config.json"));
  }
  void progressCancelThrows() {
    std::atomic<bool> flag{false};
    double last = -1;
    Progress p([&](double f, std::string_view) { last = f; }, &flag);
    p.report(0.5);
    QCOMPARE(last, 0.5);
    p.check_cancel();
    flag = true;
    QVERIFY_THROWS_EXCEPTION(Cancelled, p.check_cancel());
  }
};

QTEST_GUILESS_MAIN(TestError)
#include "test_error.moc"
