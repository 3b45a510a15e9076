package dev.routingreplay.examples;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import javax.xml.parsers.DocumentBuilderFactory;
import org.junit.jupiter.api.Test;
import org.w3c.dom.Document;
import org.w3c.dom.Element;
import org.w3c.dom.Node;
import org.w3c.dom.NodeList;

/**
 * The BOM ({@code r3-bom}, no parent on purpose) names the versions the build uses: the project's version, every module
 * of the build, and the third-party versions of the parent pom. Fails when one of them is changed in one place only.
 */
class BomTest {
    private static final Path ROOT = Files.exists(Path.of("r3-bom")) ? Path.of(".") : Path.of("..");

    private static Document read(Path pom) throws Exception {
        return DocumentBuilderFactory.newInstance().newDocumentBuilder().parse(pom.toFile());
    }

    private static Element child(Element parent, String name) {
        for (Node n = parent.getFirstChild(); n != null; n = n.getNextSibling()) {
            if (n instanceof Element e && e.getTagName().equals(name)) {
                return e;
            }
        }
        return null;
    }

    private static String text(Element parent, String name) {
        Element e = child(parent, name);
        return e == null ? null : e.getTextContent().strip();
    }

    /** groupId:artifactId -> version of every managed dependency, properties resolved from the same pom. */
    private static List<String> managed(Document pom) {
        Element properties = child(pom.getDocumentElement(), "properties");
        List<String> out = new ArrayList<>();
        NodeList deps = ((Element) pom.getElementsByTagName("dependencyManagement").item(0)).getElementsByTagName("dependency");
        for (int i = 0; i < deps.getLength(); i++) {
            Element d = (Element) deps.item(i);
            String version = text(d, "version");
            if (version.startsWith("${") && !version.equals("${project.version}")) {
                version = text(properties, version.substring(2, version.length() - 1));
            }
            out.add(text(d, "groupId") + ":" + text(d, "artifactId") + (text(d, "classifier") == null ? "" : ":" + text(d, "classifier")) + "="
                    + version);
        }
        return out;
    }

    @Test
    void theBomManagesEveryModuleAndTheParentsThirdPartyVersions() throws Exception {
        Document parent = read(ROOT.resolve("pom.xml"));
        Document bom = read(ROOT.resolve("r3-bom/pom.xml"));
        assertEquals(text(parent.getDocumentElement(), "version"), text(bom.getDocumentElement(), "version"), "the BOM's version");
        List<String> bomManaged = managed(bom);
        NodeList modules = parent.getElementsByTagName("module");
        for (int i = 0; i < modules.getLength(); i++) {
            String module = modules.item(i).getTextContent().strip();
            if (!module.equals("r3-bom")) {
                assertTrue(bomManaged.contains("dev.routingreplay:" + module + "=${project.version}"), module + " in " + bomManaged);
            }
        }
        List<String> parentManaged = managed(parent);
        for (String dependency : bomManaged) {
            if (!dependency.startsWith("dev.routingreplay:")) {
                assertTrue(parentManaged.contains(dependency), dependency + " is managed so in the parent too: " + parentManaged);
            }
        }
    }
}
