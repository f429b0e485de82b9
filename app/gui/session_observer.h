#pragma once
// SessionObserver (style.md §3, after RenderDoc's ICaptureViewer): the panels of the main
// window are told when the model, the session or the selected site changes; they never poll
// and never run anything. The main window registers them and calls them on the GUI thread.
//
// The session is shared and immutable (made on the job runner, see job_runner.h): an observer
// may keep the pointer and read it at any time.
#include <memory>

#include "core/model/site_taps.h"

namespace mxlens {
class Checkpoint;
struct Session;
}  // namespace mxlens

namespace mxlens::gui {

class SessionObserver {
 public:
  virtual ~SessionObserver() = default;

  // A model was opened (the previous one, if any, is gone); no session yet.
  virtual void onModelOpened(const Checkpoint& checkpoint) { (void)checkpoint; }
  virtual void onModelClosed() {}
  // A calibration finished or a session file was loaded; null: none.
  virtual void onSessionChanged(const std::shared_ptr<const Session>& session) { (void)session; }
  // The site the views show (the model tree's selection).
  virtual void onSiteSelected(int layer, Site site) {
    (void)layer;
    (void)site;
  }
};

}  // namespace mxlens::gui
