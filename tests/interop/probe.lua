-- mpv probe for tests/interop: reports the playback position and frame counters twice a
-- second, at the first frame (playback-restart) and when the file ends, as lines
-- starting with "PROBE" that interop.mjs parses.
local function report(tag)
  mp.msg.info(string.format("PROBE %s pos=%s frames=%s drops=%s ddrops=%s", tag,
    tostring(mp.get_property_number("time-pos")),
    tostring(mp.get_property_number("estimated-frame-number")),
    tostring(mp.get_property_number("frame-drop-count")),
    tostring(mp.get_property_number("decoder-frame-drop-count"))))
end
mp.register_event("playback-restart", function() report("restart") end)
mp.add_periodic_timer(0.5, function() report("tick") end)
mp.register_event("end-file", function(e)
  report("end")
  mp.msg.info("PROBE end-file reason=" .. tostring(e.reason) .. " error=" .. tostring(e.error))
end)
