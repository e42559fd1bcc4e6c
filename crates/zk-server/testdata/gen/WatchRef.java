import org.apache.zookeeper.*;
import org.apache.zookeeper.server.DataTree;
import org.apache.zookeeper.data.Stat;
import java.util.*;
import java.io.*;
public class WatchRef {
  static List<String> events = new ArrayList<>();
  static class W implements Watcher {
    final int s; W(int s){this.s=s;}
    public void process(WatchedEvent e){ events.add(s + " " + e.getType() + " " + e.getPath()); }
  }
  static List<String> list(String s){ if (s.isEmpty()) return new ArrayList<>(); return new ArrayList<>(Arrays.asList(s.split(","))); }
  public static void main(String[] a) throws Exception {
    BufferedReader r = new BufferedReader(new FileReader(a[0]));
    String line; DataTree dt = null; W[] ws = null; long zxid = 0; int n = 0;
    while ((line = r.readLine()) != null) {
      String[] t = line.split(" ");
      String res = "";
      events.clear();
      switch (t[0]) {
        case "reset": dt = new DataTree(); ws = new W[]{null, new W(1), new W(2), new W(3), new W(4)}; zxid = 0; break;
        case "create": zxid++; dt.createNode(t[1], new byte[0], ZooDefs.Ids.OPEN_ACL_UNSAFE, 0, -1, zxid, 0); break;
        case "delete": zxid++; dt.deleteNode(t[1], zxid); break;
        case "set": zxid++; dt.setData(t[1], new byte[0], 1, zxid, 0); break;
        case "getdata": dt.getData(t[2], new Stat(), ws[Integer.parseInt(t[1])]); break;
        case "exists": try { dt.statNode(t[2], ws[Integer.parseInt(t[1])]); } catch (KeeperException.NoNodeException e) {} break;
        case "getchildren": dt.getChildren(t[2], new Stat(), ws[Integer.parseInt(t[1])]); break;
        case "addwatch": dt.addWatch(t[2], ws[Integer.parseInt(t[1])], Integer.parseInt(t[3])); break;
        case "remove": res = "" + dt.removeWatch(t[2], Watcher.WatcherType.fromInt(Integer.parseInt(t[3])), ws[Integer.parseInt(t[1])]); break;
        case "check": res = "" + dt.containsWatcher(t[2], Watcher.WatcherType.fromInt(Integer.parseInt(t[3])), ws[Integer.parseInt(t[1])]); break;
        case "close": dt.removeCnxn(ws[Integer.parseInt(t[1])]); break;
        case "setwatches": {
          String[] parts = (t.length > 3 ? t[3] : "").split(";", -1);
          Map<Character, List<String>> m = new HashMap<>();
          for (String p : parts) if (p.length() >= 2) m.put(p.charAt(0), list(p.substring(2)));
          dt.setWatches(Long.parseLong(t[2]), m.getOrDefault('d', new ArrayList<>()), m.getOrDefault('e', new ArrayList<>()), m.getOrDefault('c', new ArrayList<>()), m.getOrDefault('p', new ArrayList<>()), m.getOrDefault('r', new ArrayList<>()), ws[Integer.parseInt(t[1])]);
          break;
        }
        default: throw new RuntimeException("bad op " + line);
      }
      Collections.sort(events);
      org.apache.zookeeper.server.watch.WatchesSummary sum = dt.getWatchesSummary();
      System.out.println(line + " | " + res + " | " + String.join(",", events) + " | " + sum.getNumPaths() + " " + sum.getTotalWatches() + " " + dt.getWatchCount() + " " + sum.getNumConnections());
      n++;
    }
    System.err.println("ops " + n);
  }
}
